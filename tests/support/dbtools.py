"""Small helpers for tests that look at or poke the jobs table directly."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import psycopg
from psycopg import sql

AsyncConn = psycopg.AsyncConnection[Any]


async def count_jobs(conn: AsyncConn, schema: str = "graphile_worker") -> int:
    cur = await conn.execute(
        sql.SQL("select count(*) from {}._private_jobs").format(sql.Identifier(schema))
    )
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def lock_job(
    conn: AsyncConn, job_id: int, worker: str = "worker-1", *, age: str = "0 seconds"
) -> None:
    """Simulate a worker fetching the job: lock it (``age`` ago) and count the attempt."""
    await conn.execute(
        "update graphile_worker._private_jobs"
        " set locked_at = now() - %s::interval, locked_by = %s, attempts = attempts + 1"
        " where id = %s",
        (age, worker, job_id),
    )


async def wait_until(
    predicate: Callable[[], Awaitable[bool]], *, within: float = 10.0, what: str = "condition"
) -> None:
    """Poll ``predicate`` until it is true; fail the test at the deadline."""
    deadline = time.monotonic() + within
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await anyio.sleep(0.01)


async def is_waiting_on_lock(observer: AsyncConn, pid: int) -> bool:
    cur = await observer.execute(
        "select wait_event_type = 'Lock' from pg_stat_activity where pid = %s", (pid,)
    )
    row = await cur.fetchone()
    return bool(row and row[0])
