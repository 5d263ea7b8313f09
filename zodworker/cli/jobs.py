"""``zodworker add-job`` and ``zodworker status``: adding one job, counting jobs by state."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from ..db import admin
from ..db.rows import AsyncTarget
from ..db.store import Store
from ..errors import ConfigError
from ..job import JobKeyMode

__all__ = ["add_job", "print_status", "read_payload"]


def _parse_run_at(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(
            "--run-at", f"{text!r} is not an ISO 8601 time; use e.g. 2030-01-01T00:00:00Z"
        ) from None


def read_payload(given: str) -> Any:
    """The payload argument: JSON text, ``-`` (read stdin) or ``@FILE`` (read the file)."""
    source = "payload"
    text = given
    if given == "-":
        source, text = "payload from stdin", sys.stdin.read()
    elif given.startswith("@"):
        path = Path(given[1:]).expanduser()
        source = f"payload file {path}"
        try:
            text = path.read_text("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError("payload", f"cannot read {path} ({exc})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            "payload", f'the {source} is not valid JSON ({exc}); e.g. \'{{"to": "a@b.c"}}\''
        ) from None


async def add_job(target: AsyncTarget, args: argparse.Namespace, schema: str) -> None:
    """Add the job the arguments describe and say so."""
    payload = read_payload(args.payload)
    mode: JobKeyMode | None = args.job_key_mode
    job = await Store(schema).add_job(
        target,
        args.task,
        payload,
        queue_name=args.queue_name,
        run_at=_parse_run_at(args.run_at),
        max_attempts=args.max_attempts,
        job_key=args.job_key,
        job_key_mode=mode,
        priority=args.priority,
        flags=args.flags,
    )
    print(f"added job {job.id} ({job.task_identifier}) to run at {job.run_at.isoformat()}")


async def print_status(target: AsyncTarget, schema: str) -> None:
    """Print jobs per task and state as a table."""
    rows = await admin.job_summary(target, schema)
    if not rows:
        print("no jobs")
        return
    print(f"{'task':<32} {'runnable':>9} {'waiting':>8} {'running':>8} {'dead':>6}")
    for row in rows:
        print(f"{row.task:<32} {row.runnable:>9} {row.waiting:>8} {row.running:>8} {row.dead:>6}")
