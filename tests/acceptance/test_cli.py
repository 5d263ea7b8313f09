"""The command line as a user runs it: a real process, real exit codes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest


def zodworker(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    full_env.pop("DATABASE_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "zodworker", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=full_env,
        check=False,
    )


def test_migrate_then_add_job_then_status(empty_db_url: str) -> None:
    migrated = zodworker("-c", empty_db_url, "migrate")
    assert migrated.returncode == 0, migrated.stderr
    assert "revision 20 (applied: 19, 20)" in migrated.stdout
    schema_only = zodworker("-c", empty_db_url, "--schema-only")
    assert "revision 20 (applied: none)" in schema_only.stdout

    added = zodworker(
        "-c",
        empty_db_url,
        "add-job",
        "send_email",
        '{"to": "a@b.c"}',
        "--queue",
        "mail",
        "--priority",
        "-1",
        "--flag",
        "slow",
        "--run-at",
        "2030-01-01T00:00:00Z",
    )
    assert added.returncode == 0, added.stderr
    assert "to run at 2030-01-01T00:00:00+00:00" in added.stdout
    status = zodworker("-c", empty_db_url, "status")
    assert status.stdout.splitlines()[-1].split() == ["send_email", "0", "1", "0", "0"]
    with psycopg.connect(empty_db_url) as conn:
        row = conn.execute(
            "select j.payload::text, v.queue_name, v.priority, v.flags::text"
            " from graphile_worker._private_jobs as j join graphile_worker.jobs as v using (id)"
        ).fetchone()
    assert row == ('{"to":"a@b.c"}', "mail", -1, '{"slow": true}')


def test_bad_input_exits_1_with_the_field_and_writes_nothing(db_url: str) -> None:
    result = zodworker("-c", db_url, "add-job", "t", "{}", "--priority", "99999")
    assert result.returncode == 1
    assert "priority: is 99999" in result.stderr
    bad_json = zodworker("-c", db_url, "add-job", "t", "{not json")
    assert (bad_json.returncode, "payload: not valid JSON" in bad_json.stderr) == (1, True)
    with psycopg.connect(db_url) as conn:
        assert conn.execute("select count(*) from graphile_worker._private_jobs").fetchone() == (0,)


def test_newer_breaking_schema_exits_57(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("insert into graphile_worker.migrations (id, breaking) values (23, true)")
    result = zodworker("-c", db_url, "migrate")
    assert result.returncode == 57
    assert "breaking migration 23" in result.stderr


def test_usage_errors_exit_2() -> None:
    assert zodworker("no-such-command").returncode == 2


@pytest.mark.embedded_smoke
def test_demo_with_no_database_url_uses_the_embedded_server(tmp_path: Path) -> None:
    env = {"ZODWORKER_EMBEDDED_DIR": str(tmp_path / "pg")}
    try:
        first = zodworker("demo", env=env)
        assert first.returncode == 0, first.stderr
        assert "using the embedded PostgreSQL" in first.stderr
        assert "added demo job 1 (demo.hello)" in first.stdout
        second = zodworker("demo", env=env)  # same data directory: the queue persisted
        assert "applied: none" in second.stdout
        assert second.stdout.splitlines()[-1].split() == ["demo.hello", "2", "0", "0", "0"]
    finally:
        from zodworker.embedded import stop_embedded

        stop_embedded(tmp_path / "pg")
