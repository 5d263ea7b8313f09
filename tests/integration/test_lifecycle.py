"""One lifecycle idiom: stop before start and stop twice are fine, a failing start closes
what it opened, and nothing keeps running once a pool or a client has stopped."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest

from tests.support.dbtools import wait_until
from tests.support.pools import pool_options
from zodworker import (
    DatabaseError,
    IncompatibleSchemaError,
    JobHelpers,
    LifecycleError,
    Store,
    TaskCatalog,
    WorkerPool,
    ZodWorker,
    task,
)

pytestmark = pytest.mark.anyio


options = pool_options


def backends_of_this_database(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as observer:
        row = observer.execute(
            "select count(*) from pg_stat_activity"
            " where datname = current_database() and pid <> pg_backend_pid()"
        ).fetchone()
    assert row is not None
    return int(row[0])


async def all_closed(url: str) -> None:
    """Poll until no backend but the observer's is left in the database (a closed
    connection's backend takes a moment to exit)."""
    await wait_until(
        lambda: _true(backends_of_this_database(url) == 0), what="every connection to close"
    )


async def noop(payload: Any, helpers: JobHelpers) -> None:
    return None


async def test_a_pool_stopped_before_it_starts_never_runs(db_url: str) -> None:
    pool = WorkerPool({"t": noop}, options(db_url))
    await pool.stop()
    await pool.stop()
    await pool.start()  # stays stopped
    assert pool.stats().state == "stopped"
    await all_closed(db_url)


async def test_start_twice_stop_twice_and_no_task_left_behind(db_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        for n in range(20):
            await Store().add_job(conn, "t", {"n": n})
    before = asyncio.all_tasks()
    done: list[int] = []
    release = asyncio.Event()

    async def hold_first(payload: Any, helpers: JobHelpers) -> None:
        if not done:
            await release.wait()  # the rest sit in the local buffer past their TTL
        done.append(payload["n"])

    pool = WorkerPool({"t": hold_first}, options(db_url, local_queue_size=10, local_queue_ttl=0.1))
    await pool.start()
    await pool.start()
    assert pool.stats().state == "running"

    async def returned_some() -> bool:
        async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as c:
            cur = await c.execute(
                "select count(*) from graphile_worker._private_jobs where locked_by is null"
            )
            row = await cur.fetchone()
        return row is not None and row[0] > 0

    await wait_until(returned_some, what="buffered jobs past their TTL to be given back")
    release.set()
    await wait_until(lambda: _true(len(done) == 20), what="every job to run")
    await pool.stop()
    await pool.stop()
    assert pool.stats().state == "stopped"
    assert asyncio.all_tasks() - before <= {asyncio.current_task()}  # nothing left running
    await all_closed(db_url)


async def test_a_failing_initialize_closes_what_it_opened(empty_db_url: str) -> None:
    catalog = TaskCatalog(t=task(dict, noop))
    client = ZodWorker(catalog=catalog, database_url=empty_db_url, migrate=False)
    with pytest.raises(DatabaseError, match="migrate"):  # no schema: the pool cannot register
        await client.initialize()
    await all_closed(empty_db_url)
    with pytest.raises(LifecycleError, match="initialize"):
        await client.enqueue("t", {})
    await client.stop()
    await client.stop()


async def test_an_incompatible_schema_fails_initialize_and_leaves_nothing_open(
    db_url: str,
) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("insert into graphile_worker.migrations (id, breaking) values (999, true)")
    client = ZodWorker(catalog=TaskCatalog(t=task(dict, noop)), database_url=db_url)
    with pytest.raises(IncompatibleSchemaError):
        await client.initialize()
    await all_closed(db_url)


async def test_lifecycle_misuse_says_what_to_call(db_url: str) -> None:
    client = ZodWorker(catalog=TaskCatalog(t=task(dict)), database_url=db_url, producer_only=True)
    with pytest.raises(LifecycleError, match=r"call `await client.initialize\(\)` first"):
        await client.dequeue("k")
    async with client:
        assert (await client.enqueue("t", {})).task_identifier == "t"
    with pytest.raises(LifecycleError, match="make a new one"):
        await client.initialize()


async def _true(value: bool) -> bool:
    return value
