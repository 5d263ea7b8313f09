"""The example Django project's own tests, run with Django's test runner against real
PostgreSQL: a view writes an order and enqueues its shipping in one ``atomic()`` block, a
rollback leaves neither, and ``manage.py zodworker`` (a process) ships a committed order."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("django", reason="Django is part of the test extra")

PROJECT = Path(__file__).resolve().parents[2] / "examples" / "django_project"


def test_the_django_projects_tests_pass(db_url: str) -> None:
    env = {**os.environ, "DATABASE_URL": db_url, "PYTHONPATH": str(PROJECT.parents[1])}
    run = subprocess.run(
        [sys.executable, "manage.py", "test", "orders", "-v", "2"],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Ran 3 tests" in run.stderr and "OK" in run.stderr, run.stderr
    for name in (
        "test_an_order_and_its_job_are_written_together",
        "test_a_rollback_leaves_neither_the_order_nor_the_job",
        "test_manage_py_zodworker_ships_a_committed_order",
    ):
        assert f"{name} " in run.stderr and "ok" in run.stderr, run.stderr
