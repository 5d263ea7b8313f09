"""The demo behind ``zodworker demo``: a few jobs and a worker that runs them visibly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from ..db.rows import AsyncTarget
from ..db.store import Store
from ..worker.helpers import JobHelpers
from .run import TaskSources

__all__ = ["DEMO_TASKS", "add_demo_jobs", "demo_sources"]


async def hello(payload: dict[str, Any], helpers: JobHelpers) -> None:
    """Print the greeting; the worker deletes the job when this returns."""
    print(
        f"demo.hello ran job {helpers.job.id} (attempt {helpers.job.attempts}): "
        f"{payload.get('greeting')}, {payload.get('name')}!",
        flush=True,
    )


DEMO_TASKS = {"demo.hello": hello}


def demo_sources() -> TaskSources:
    """The demo's tasks, as the run command takes them."""
    return TaskSources({}, DEMO_TASKS, None)


async def add_demo_jobs(target: AsyncTarget, schema: str, count: int = 3) -> None:
    """One job now and the rest two seconds apart, to show scheduling."""
    store = Store(schema)
    now = datetime.now(UTC)
    for index in range(count):
        job = await store.add_job(
            target,
            "demo.hello",
            {"greeting": "hello", "name": f"world #{index + 1}"},
            run_at=now + timedelta(seconds=2 * index),
        )
        print(f"added demo job {job.id} to run at {job.run_at:%H:%M:%S}", flush=True)
