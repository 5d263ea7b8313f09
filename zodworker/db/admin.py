"""Queries for operators and housekeeping: job counts, queue metrics, cleanup.

Each function takes a target (a connection or a pool, see :mod:`zodworker.db.rows`) and the
schema, and returns plain values. Only these run the queries of ``sql/queries/admin.sql``.
"""

from __future__ import annotations

from typing import NamedTuple

from . import sqlfiles
from .rows import AsyncTarget, borrow, fetch

__all__ = ["TaskCounts", "cleanup_dead_jobs", "job_summary", "runnable_by_task"]


class TaskCounts(NamedTuple):
    """Jobs of one task by state (dead: out of attempts; running: locked)."""

    task: str
    runnable: int
    waiting: int
    running: int
    dead: int


async def job_summary(target: AsyncTarget, schema: str) -> list[TaskCounts]:
    """Jobs per task and state, by task identifier."""
    async with borrow(target) as conn:
        rows = await fetch(conn, sqlfiles.query("job_summary", schema))
    return [TaskCounts(*row) for row in rows]


async def runnable_by_task(target: AsyncTarget, schema: str) -> dict[str, int]:
    """Jobs ready to run now, per task identifier (from the available-jobs index)."""
    async with borrow(target) as conn:
        rows = await fetch(conn, sqlfiles.query("runnable_by_task", schema))
    return {identifier: int(count) for identifier, count in rows}


async def cleanup_dead_jobs(target: AsyncTarget, schema: str, *, ttl: float, max_count: int) -> int:
    """Delete up to ``max_count`` permanently failed jobs last touched more than ``ttl``
    seconds ago (through ``complete_jobs``); return how many."""
    params = {"ttl": f"{ttl} seconds", "max_count": max_count}
    async with borrow(target) as conn:
        [(removed,)] = await fetch(conn, sqlfiles.query("cleanup_dead_jobs", schema), params)
    return int(removed)
