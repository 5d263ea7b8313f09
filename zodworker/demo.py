"""The demo behind ``zodworker demo``: a few jobs and a worker that runs them visibly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from .helpers import JobHelpers
from .store import Store

__all__ = ["DEMO_TASKS", "add_demo_jobs"]


async def hello(payload: dict[str, Any], helpers: JobHelpers) -> None:
    """Print the greeting; the worker deletes the job when this returns."""
    print(
        f"demo.hello ran job {helpers.job.id} (attempt {helpers.job.attempts}): "
        f"{payload.get('greeting')}, {payload.get('name')}!",
        flush=True,
    )


DEMO_TASKS = {"demo.hello": hello}


async def add_demo_jobs(conn: psycopg.AsyncConnection[Any], schema: str, count: int = 3) -> None:
    """One job now and the rest two seconds apart, to show scheduling."""
    store = Store(schema)
    now = datetime.now(UTC)
    for index in range(count):
        job = await store.add_job(
            conn,
            "demo.hello",
            {"greeting": "hello", "name": f"world #{index + 1}"},
            run_at=now + timedelta(seconds=2 * index),
        )
        print(f"added demo job {job.id} to run at {job.run_at:%H:%M:%S}", flush=True)
