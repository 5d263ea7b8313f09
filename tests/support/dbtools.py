"""Small helpers for tests that look at or poke the jobs table directly."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
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


@asynccontextmanager
async def _async_connect(url: str, **kwargs: Any) -> AsyncIterator[AsyncConn]:
    async with await psycopg.AsyncConnection.connect(url, **kwargs) as conn:
        yield conn


async def run_while_lock_in_flight(
    db_url: str,
    job_id: int,
    action: Callable[[Any], Awaitable[object]],
    *,
    connect: Callable[..., AbstractAsyncContextManager[Any]] = _async_connect,
) -> object:
    """Run ``action`` while a worker's lock on ``job_id`` is uncommitted, then commit it.

    ``action`` runs on its own autocommit connection (made by ``connect``); we wait
    (polling pg_stat_activity) until it blocks on the worker's row lock, then commit the
    worker's transaction, and return what ``action`` returned. This makes the lock-mid-add
    race deterministic.
    """
    result: list[object] = []
    async with (
        await psycopg.AsyncConnection.connect(db_url, autocommit=True) as observer,
        await psycopg.AsyncConnection.connect(db_url) as worker,
        connect(db_url, autocommit=True) as actor,
    ):
        await lock_job(worker, job_id)

        async def act() -> None:
            result.append(await action(actor))

        async with anyio.create_task_group() as tg:
            tg.start_soon(act)
            await wait_until(
                lambda: is_waiting_on_lock(observer, actor.info.backend_pid),
                what="the action to block on the worker's lock",
            )
            await worker.commit()
    return result[0]
