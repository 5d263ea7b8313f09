"""Each example runs as a user would run it, against a real database."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_example(name: str, db_url: str) -> str:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / name)],
        env={**os.environ, "DATABASE_URL": db_url},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_enqueue_in_transaction(db_url: str) -> None:
    out = run_example("enqueue_in_transaction.py", db_url).splitlines()
    assert out[0].startswith("committed: run_committed with job ")
    assert out[1:] == [
        "rolled back: the request failed after enqueueing",
        "run run_committed: 1 job(s)",
        "jobs for run_rolled_back: 0",
    ]
