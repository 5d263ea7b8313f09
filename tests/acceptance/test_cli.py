"""The command line as a user runs it: a real process, real exit codes."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from subprocess import PIPE, STDOUT, Popen

import psycopg
import pytest


def zodworker(
    *args: str,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    stdin: str | None = None,
    inherit_settings: bool = True,
) -> subprocess.CompletedProcess[str]:
    """``python -m zodworker ARGS``, without the caller's DATABASE_URL (nor its ZODWORKER_*
    variables unless ``inherit_settings``)."""
    inherited = {
        k: v
        for k, v in os.environ.items()
        if k != "DATABASE_URL" and (inherit_settings or not k.startswith("ZODWORKER_"))
    }
    full_env = {**inherited, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "zodworker", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        env=full_env,
        cwd=cwd,
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
    assert (bad_json.returncode, "payload: the payload is not valid JSON" in bad_json.stderr) == (
        1,
        True,
    )
    with psycopg.connect(db_url) as conn:
        assert conn.execute("select count(*) from graphile_worker._private_jobs").fetchone() == (0,)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ('{"rate": NaN}', "payload.rate: is nan"),
        ('{"caps": [Infinity]}', "payload.caps[0]: is inf"),
        ('{"name": "a\\u0000b"}', "payload.name: contains a NUL character"),
    ],
)
def test_payloads_json_cannot_keep_exit_1_and_write_nothing(
    db_url: str, payload: str, message: str
) -> None:
    result = zodworker("-c", db_url, "add-job", "t", payload)
    assert result.returncode == 1, result.stdout
    assert message in result.stderr
    with psycopg.connect(db_url) as conn:
        assert conn.execute("select count(*) from graphile_worker._private_jobs").fetchone() == (0,)


def test_an_app_factory_that_needs_arguments_is_a_clear_error(db_url: str, tmp_path: Path) -> None:
    (tmp_path / "needs_args.py").write_text("def make_tasks(config):\n    return {}\n")
    proc = zodworker("-c", db_url, "--once", "--app", "needs_args:make_tasks", cwd=tmp_path)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert "--app 'needs_args:make_tasks'" in proc.stderr and "without arguments" in proc.stderr


def test_add_job_reads_the_payload_from_stdin_or_a_file(db_url: str, tmp_path: Path) -> None:
    from_stdin = zodworker("-c", db_url, "add-job", "t", "-", stdin='{"via": "stdin"}')
    assert from_stdin.returncode == 0, from_stdin.stderr
    (tmp_path / "payload.json").write_text('{"via": "file", "n": [1, 2]}')
    from_file = zodworker("-c", db_url, "add-job", "t", f"@{tmp_path / 'payload.json'}")
    assert from_file.returncode == 0, from_file.stderr
    missing = zodworker("-c", db_url, "add-job", "t", f"@{tmp_path / 'nope.json'}")
    assert missing.returncode == 1 and "payload: cannot read" in missing.stderr
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "select payload from graphile_worker._private_jobs order by id"
        ).fetchall()
    assert rows == [({"via": "stdin"},), ({"via": "file", "n": [1, 2]},)]


def test_status_and_admin_on_an_unmigrated_database_say_to_migrate(empty_db_url: str) -> None:
    for command in (["status"], ["add-job", "t"], ["jobs", "list"], ["stats"]):
        result = zodworker("-c", empty_db_url, *command)
        assert result.returncode == 1, (command, result.stdout, result.stderr)
        assert "run `zodworker migrate` first" in result.stderr, command
        assert "Traceback" not in result.stderr
    with psycopg.connect(empty_db_url) as conn:  # and nothing was created meanwhile
        found = conn.execute(
            "select count(*) from pg_namespace where nspname = 'graphile_worker'"
        ).fetchone()
    assert found == (0,)


def test_config_shows_each_setting_and_where_it_came_from(tmp_path: Path) -> None:
    (tmp_path / "zodworker.toml").write_text("concurrency = 3\npoll_interval = 0.5\n")
    env = {"ZODWORKER_SCHEMA": "jobs", "DATABASE_URL": "postgresql://app:pw@db/x"}
    result = zodworker_in(tmp_path, "config", "--json", "--metrics-port", "9999", env=env)
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["file"] == str(tmp_path / "zodworker.toml")
    got = {name: (entry["value"], entry["source"]) for name, entry in shown["settings"].items()}
    assert got["concurrency"] == (3, f"file {tmp_path / 'zodworker.toml'}")
    assert got["poll_interval"] == (0.5, f"file {tmp_path / 'zodworker.toml'}")
    assert got["schema"] == ("jobs", "env ZODWORKER_SCHEMA")
    assert got["connection"] == ("postgresql://app:***@db/x", "env DATABASE_URL")
    assert got["metrics_port"] == (9999, "flag --metrics-port")
    assert got["max_pool_size"] == (10, "default")
    table = zodworker_in(tmp_path, "config", "-j", "5", env=env)
    assert table.returncode == 0, table.stderr
    row = next(line for line in table.stdout.splitlines() if line.startswith("concurrency "))
    assert row.split() == ["concurrency", "5", "flag", "--jobs"]


def test_bad_config_fails_before_anything_runs_naming_the_key_and_file(tmp_path: Path) -> None:
    (tmp_path / "zodworker.toml").write_text("concurency = 3\n")
    for command in (["config"], ["run"], ["migrate"]):
        result = zodworker_in(tmp_path, *command)
        assert result.returncode == 2, (command, result.stderr)
        assert "concurency" in result.stderr and "zodworker.toml" in result.stderr
        assert "did you mean concurrency" in result.stderr
    (tmp_path / "zodworker.toml").write_text("concurrency = 0\n")
    out_of_range = zodworker_in(tmp_path, "run")
    assert out_of_range.returncode == 1
    assert "concurrency: is 0" in out_of_range.stderr and "set by file" in out_of_range.stderr


def zodworker_in(
    cwd: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """:func:`zodworker` in ``cwd`` with no ZODWORKER_* variable of the caller's."""
    return zodworker(*args, env=env, cwd=cwd, inherit_settings=False)


def test_newer_breaking_schema_exits_57(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("insert into graphile_worker.migrations (id, breaking) values (23, true)")
    result = zodworker("-c", db_url, "migrate")
    assert result.returncode == 57
    assert "breaking migration 23" in result.stderr


def test_usage_errors_exit_2() -> None:
    assert zodworker("no-such-command").returncode == 2


def start_zodworker(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> Popen[str]:
    full_env = {**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"}
    full_env.pop("DATABASE_URL", None)
    return Popen(
        [sys.executable, "-m", "zodworker", *args],
        stdout=PIPE,
        stderr=STDOUT,
        text=True,
        env=full_env,
        cwd=cwd,
    )


def read_until(proc: Popen[str], needle: str, seen: list[str], within: float = 60) -> None:
    """Read the process's output line by line until ``needle`` appears (or fail)."""
    assert proc.stdout is not None
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.5)
        if ready:
            line = proc.stdout.readline()
            if not line:
                break
            seen.append(line)
            if needle in line:
                return
    raise AssertionError(f"{needle!r} not seen; output so far:\n{''.join(seen)}")


@pytest.mark.embedded_smoke
def test_demo_runs_a_worker_on_the_embedded_server_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    env = {"ZODWORKER_EMBEDDED_DIR": str(tmp_path / "pg")}
    seen: list[str] = []
    proc = start_zodworker("demo", env=env)
    try:
        read_until(proc, "demo.hello ran job 1 (attempt 1): hello, world #1!", seen)
        read_until(proc, "world #3!", seen)  # the scheduled ones too
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
        from zodworker.embedded import stop_embedded

        stop_embedded(tmp_path / "pg")
    output = "".join(seen) + rest
    assert proc.returncode == 0, output
    assert "using the embedded PostgreSQL" in output
    assert "worker stopped" in output


def test_run_once_with_a_tasks_directory_and_an_app(db_url: str, tmp_path: Path) -> None:
    tasks = tmp_path / "tasks"
    (tasks / "billing").mkdir(parents=True)
    out = tmp_path / "ran.txt"
    (tasks / "billing" / "charge.py").write_text(
        "import os\n"
        "def task(payload, helpers):\n"
        "    with open(os.environ['RAN_FILE'], 'a') as f:\n"
        "        f.write(f\"charge {payload['amount']}\\n\")\n"
    )
    (tmp_path / "myapp.py").write_text(
        "import os\n"
        "async def notify(payload, helpers):\n"
        "    with open(os.environ['RAN_FILE'], 'a') as f:\n"
        '        f.write(f"notify {helpers.job.id}\\n")\n'
        "TASKS = {'notify': notify}\n"
    )
    for task, payload in [("billing/charge", '{"amount": 5}'), ("notify", "{}")]:
        assert zodworker("-c", db_url, "add-job", task, payload).returncode == 0
    proc = zodworker(
        "-c",
        db_url,
        "--once",
        "--app",
        "myapp:TASKS",
        "-j",
        "2",
        cwd=tmp_path,
        env={"RAN_FILE": str(out)},
    )
    assert proc.returncode == 0, proc.stderr
    lines = sorted(out.read_text().splitlines())
    assert lines[0] == "charge 5"
    assert lines[1].startswith("notify ")
    assert zodworker("-c", db_url, "status").stdout.strip() == "no jobs"


def test_run_without_tasks_explains_what_to_do(db_url: str, tmp_path: Path) -> None:
    proc = zodworker("-c", db_url, "--once", cwd=tmp_path)
    assert proc.returncode == 1
    assert "no tasks to run" in proc.stderr
    bad_app = zodworker("-c", db_url, "--once", "--app", "no_such_module:x")
    assert (bad_app.returncode, "cannot import" in bad_app.stderr) == (1, True)


def test_cron_list_shows_next_runs_and_bad_lines_point_at_the_column(tmp_path: Path) -> None:
    (tmp_path / "crontab").write_text(
        "# nightly report, Paris time\n30 2 * * * report ?tz=Europe/Paris&fill=1h\n"
    )
    proc = zodworker("cron", "list", "-n", "2", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "report: 30 2 * * * (Europe/Paris) -> report"
    assert len(lines) == 3 and all(line.startswith("  20") for line in lines[1:])
    bad_file = tmp_path / "bad"
    bad_file.write_text("* * * * * ok\n*/0 * * * * nope\n# fine\n* * * * * a b\n")
    bad = zodworker("cron", "list", "--crontab", str(bad_file))
    assert bad.returncode == 1
    reported = bad.stderr.strip().splitlines()
    assert reported[0].startswith(f"zodworker: crontab {bad_file} line 2, column 3: expected")
    assert reported[1].startswith(f"crontab {bad_file} line 4, column 13: expected")
    assert len(reported) == 2, "each bad line once, the good ones not at all"
