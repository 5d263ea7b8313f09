"""``zodworker add-job`` and ``zodworker status``: adding one job, counting jobs by state."""

from __future__ import annotations

import argparse
import json
from datetime import datetime

from ..db import admin
from ..db.rows import AsyncTarget
from ..db.store import Store
from ..errors import ConfigError
from ..job import JobKeyMode

__all__ = ["add_job", "print_status"]


def _parse_run_at(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(
            "--run-at", f"{text!r} is not an ISO 8601 time; use e.g. 2030-01-01T00:00:00Z"
        ) from None


async def add_job(target: AsyncTarget, args: argparse.Namespace) -> None:
    """Add the job the arguments describe and say so."""
    try:
        payload = json.loads(args.payload)
    except json.JSONDecodeError as exc:
        raise ConfigError("payload", f"not valid JSON ({exc})") from None
    mode: JobKeyMode | None = args.job_key_mode
    job = await Store(args.schema).add_job(
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
