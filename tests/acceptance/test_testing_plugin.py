"""zodworker's pytest plugin as a user's project meets it: off until enabled, a migrated
schema per test that is dropped afterwards, and the example project's own tests (draining,
enqueue assertions, a failing task, eager mode) passing against real PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[2]

PROBE = textwrap.dedent(
    """
    import os

    import psycopg


    def test_the_schema_is_migrated_and_empty(zodworker_db):
        with psycopg.connect(zodworker_db.url, autocommit=True) as conn:
            count = conn.execute(
                f'select count(*) from "{zodworker_db.schema}".jobs'
            ).fetchone()[0]
        assert count == 0
        with open(os.environ["SCHEMA_FILE"], "a") as out:
            out.write(zodworker_db.schema + "\\n")


    def test_each_test_has_its_own(zodworker_db):
        test_the_schema_is_migrated_and_empty(zodworker_db)
    """
)


def _pytest(cwd: Path, url: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    environment.update(ZODWORKER_TEST_DATABASE_URL=url, **env)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_the_example_projects_tests_pass_with_the_plugin(db_url: str) -> None:
    run = _pytest(ROOT / "examples" / "testing_project", db_url)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "5 passed" in run.stdout


def test_the_plugin_is_off_until_enabled_and_drops_its_schemas(db_url: str, tmp_path: Path) -> None:
    (tmp_path / "test_probe.py").write_text(PROBE)
    schemas = tmp_path / "schemas.txt"
    off = _pytest(tmp_path, db_url, SCHEMA_FILE=str(schemas))
    assert off.returncode == 1 and "fixture 'zodworker_db' not found" in off.stdout, off.stdout
    on = _pytest(tmp_path, db_url, "--zodworker", SCHEMA_FILE=str(schemas))
    assert on.returncode == 0, on.stdout + on.stderr
    made = schemas.read_text().split()
    assert len(made) == 2 and len(set(made)) == 2  # one schema per test
    with psycopg.connect(db_url, autocommit=True) as conn:
        left = conn.execute(
            "select count(*) from pg_namespace where nspname = any(%s)", (made,)
        ).fetchone()
    assert left == (0,)  # dropped after each test
    (tmp_path / "pytest.ini").write_text("[pytest]\nzodworker = true\n")
    by_ini = _pytest(tmp_path, db_url, SCHEMA_FILE=str(schemas))
    assert by_ini.returncode == 0, by_ini.stdout + by_ini.stderr
