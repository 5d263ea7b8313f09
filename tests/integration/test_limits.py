"""Flow control against real PostgreSQL: concurrency per key, rate windows, fairness across
keys, limits changed at run time, and slots freed by failures, give-backs and dead pools.

Times come from the database (``locked_at`` is the moment the fetch took the job and
recorded its start), so the checks do not depend on how fast the test's own loop runs.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from datetime import datetime
from typing import Any

import anyio
import psycopg
import pytest

from tests.support.dbtools import wait_until
from tests.support.limitapp import most_at_once
from tests.support.pools import pool_options
from zodworker import JobHelpers, JobSpec, Limit, Rate, Store, WorkerPool
from zodworker.admin import Admin
from zodworker.db.connect import Database
from zodworker.db.lease import LeaseStore
from zodworker.db.worker_store import WorkerStore

pytestmark = pytest.mark.anyio


async def _count(conn: psycopg.AsyncConnection[Any], query: str, *params: object) -> int:
    cur = await conn.execute(query, params)
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def test_concurrency_per_key_holds_across_pools(db_url: str) -> None:
    tenant = Limit("tenant", concurrency=2, key=lambda p: p["t"])
    spans: dict[str, list[tuple[float, float]]] = defaultdict(list)

    async def work(payload: Any, helpers: JobHelpers) -> None:
        started = time.monotonic()
        await asyncio.sleep(0.03)
        spans[payload["t"]].append((started, time.monotonic()))

    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        specs = [JobSpec(identifier="work", payload={"t": f"t{i % 4}"}) for i in range(80)]
        await Store().add_jobs(conn, specs, limits=[[tenant]] * len(specs))
        pools = [
            WorkerPool({"work": work}, pool_options(db_url, pool_id=f"p{i}", concurrency=5))
            for i in range(2)
        ]
        for pool in pools:
            await pool.start()
        try:
            await wait_until(
                lambda: _count_is(conn, "select count(*) from graphile_worker.jobs", 0),
                within=30,
                what="every job done",
            )
        finally:
            for pool in pools:
                await pool.stop()
        assert sum(len(s) for s in spans.values()) == 80
        for key, key_spans in spans.items():
            assert most_at_once(key_spans) <= 2, key
        assert max(most_at_once(s) for s in spans.values()) == 2  # the limit was reached
        # everything was released: no slot, no limited row left behind
        assert (
            await _count(conn, "select count(*) from graphile_worker._zodworker_limit_slots") == 0
        )
        assert (
            await _count(conn, "select count(*) from graphile_worker._zodworker_limited_jobs") == 0
        )


async def _count_is(conn: psycopg.AsyncConnection[Any], query: str, value: int) -> bool:
    return await _count(conn, query) == value


async def test_rate_window_is_never_exceeded(db_url: str) -> None:
    api = Limit("api", rate=Rate(5, per=0.5))
    started: list[datetime] = []

    async def call(payload: Any, helpers: JobHelpers) -> None:
        assert helpers.job.locked_at is not None
        started.append(helpers.job.locked_at)

    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        specs = [JobSpec(identifier="call", payload={"n": n}) for n in range(30)]
        await Store().add_jobs(conn, specs, limits=[[api]] * len(specs))
        began = time.monotonic()
        async with WorkerPool({"call": call}, pool_options(db_url, concurrency=10)):
            await wait_until(lambda: _len_is(started, 30), within=30, what="every job started")
        took = time.monotonic() - began
    times = sorted(t.timestamp() for t in started)
    for i, t in enumerate(times):
        in_window = [u for u in times[i:] if u < t + 0.5]
        assert len(in_window) <= 5, (t, in_window)
    # 30 starts at 5 per 0.5 s: at least 2.5 s; woken by the window, not by polling late
    assert took >= 2.4
    assert took < 6.0


async def _len_is(items: list[Any], n: int) -> bool:
    return len(items) >= n


async def test_small_key_is_served_beside_a_big_backlog(db_url: str) -> None:
    tenant = Limit("tenant", key=lambda p: p["t"])  # no cap: keys served in turn
    order: list[str] = []

    async def work(payload: Any, helpers: JobHelpers) -> None:
        order.append(payload["t"])
        await asyncio.sleep(0.005)

    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        store = Store()
        big = [JobSpec(identifier="work", payload={"t": "A"}) for _ in range(2_000)]
        await store.add_jobs(conn, big, limits=[[tenant]] * len(big))
        small = [JobSpec(identifier="work", payload={"t": "B"}) for _ in range(20)]
        await store.add_jobs(conn, small, limits=[[tenant]] * len(small))
        async with WorkerPool({"work": work}, pool_options(db_url, concurrency=4)):
            await wait_until(lambda: _len_is([t for t in order if t == "B"], 20), within=30)
            done_at = len(order)
    # B's 20 jobs started among the first ~80, not after A's 2,000
    assert done_at < 200, done_at


async def test_changing_a_limit_takes_effect_at_once(db_url: str) -> None:
    gate = Limit("gate", concurrency=1)
    running: Counter[str] = Counter()
    release = asyncio.Event()

    async def hold(payload: Any, helpers: JobHelpers) -> None:
        running["now"] += 1
        running["most"] = max(running["most"], running["now"])
        try:
            await release.wait()
        finally:
            running["now"] -= 1

    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        store = Store()
        await store.declare_limits(conn, [gate])
        specs = [JobSpec(identifier="hold") for _ in range(6)]
        await store.add_jobs(conn, specs, limits=[[gate]] * 6)
        options = pool_options(db_url, concurrency=6, poll_interval=30.0)
        async with WorkerPool({"hold": hold}, options):
            await wait_until(lambda: _counter_is(running, "now", 1), what="one running")
            await asyncio.sleep(0.2)
            assert running["now"] == 1
            # the five held back are waiting, not failed, and have used no attempt
            tried = "select count(*) from graphile_worker._private_jobs where attempts > 0"
            assert await _count(conn, tried) == 1
            errors = (
                "select count(*) from graphile_worker._private_jobs where last_error is not null"
            )
            assert await _count(conn, errors) == 0
            admin = Admin()
            changed = time.monotonic()
            await admin.set_limit(conn, "gate", concurrency=4)
            await wait_until(lambda: _counter_is(running, "now", 4), within=1.0, what="four")
            print(f"limit change took effect in {time.monotonic() - changed:.3f}s")
            release.set()
        assert running["most"] == 4
        # a restart of the code that declared 1 does not undo the operator's setting
        await store.declare_limits(conn, [gate])
        [info] = [i for i in await admin.limits(conn) if i.name == "gate"]
        assert (info.concurrency, info.declared_concurrency, info.overridden) == (4, 1, True)
        await admin.reset_limit(conn, "gate")
        [info] = [i for i in await admin.limits(conn) if i.name == "gate"]
        assert (info.concurrency, info.overridden) == (1, False)


async def _counter_is(counter: Counter[str], key: str, value: int) -> bool:
    return counter[key] == value


async def test_failures_and_dead_pools_free_their_slots(db_url: str) -> None:
    one = Limit("one", concurrency=1)
    attempts: Counter[int] = Counter()

    async def flaky(payload: Any, helpers: JobHelpers) -> None:
        attempts[helpers.job.id] += 1
        if attempts[helpers.job.id] == 1:
            raise RuntimeError("first attempt fails")

    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        store = Store()
        first = await store.add_job(conn, "flaky", {}, limits=[one])
        second = await store.add_job(conn, "flaky", {}, limits=[one])
        async with WorkerPool({"flaky": flaky}, pool_options(db_url, concurrency=2)):
            # the first attempt of each fails; the failure frees the slot for the other job
            await wait_until(lambda: _both_tried(attempts, first.id, second.id), within=10)
        slots = await _count(conn, "select count(*) from graphile_worker._zodworker_limit_slots")
        assert slots == 0

        # a pool that dies holding a slot: its lease is reaped and the slot freed with it
        await conn.execute(
            "update graphile_worker._private_jobs set run_at = now() where id = any(%s)",
            ([first.id, second.id],),
        )
        dead = WorkerPool({"flaky": _forever}, pool_options(db_url, pool_id="dead"))
        await dead.start()
        await wait_until(
            lambda: _count_is(
                conn, "select count(*) from graphile_worker._zodworker_limit_slots", 1
            ),
            what="the dead pool's slot",
        )
        await dead.stop(forceful=True)  # ends its lease: unregister frees the slot
        assert (
            await _count(conn, "select count(*) from graphile_worker._zodworker_limit_slots") == 0
        )


async def _both_tried(attempts: Counter[int], a: int, b: int) -> bool:
    return attempts[a] >= 1 and attempts[b] >= 1


async def _forever(payload: Any, helpers: JobHelpers) -> None:
    await asyncio.sleep(3600)


async def test_housekeeping_frees_what_others_unlocked_and_forgets_removed_jobs(
    db_url: str,
) -> None:
    one = Limit("one", concurrency=1, key=lambda p: p["k"])
    database = Database(db_url)
    await database.open()
    try:
        async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
            store = Store()
            held = await store.add_job(conn, "t", {"k": "a"}, limits=[one])
            gone = await store.add_job(conn, "t", {"k": "b"}, limits=[one])
            worker = WorkerStore(database, "holder")
            await conn.execute(
                "insert into graphile_worker._zodworker_pools (pool_id, lease_expires_at)"
                " values ('holder', now() + interval '1 hour')"
            )
            [task_id] = await worker.register_tasks(["t"])
            taken = await worker.get_limited_jobs([task_id], [], 5)
            assert sorted(job.id for job in taken) == sorted([held.id, gone.id])
            slots = "select count(*) from graphile_worker._zodworker_limit_slots"
            assert await _count(conn, slots) == 2
            # an operator frees the holder's jobs by hand: the slots outlive the locks...
            await Admin().unlock_workers(conn, ["holder"])
            assert await _count(conn, slots) == 2
            assert await worker.reconcile_limits() == 2  # ...until the reconciler runs
            assert await _count(conn, slots) == 0
            # a job removed by other means (here graphile-worker's complete_jobs)
            await store.complete_jobs(conn, [gone.id])
            rows = "select count(*) from graphile_worker._zodworker_limited_jobs"
            assert await _count(conn, rows) == 2
            await worker.tidy_limits()
            assert await _count(conn, rows) == 1
            # the one left runs again once its key has room
            again = await worker.get_limited_jobs([task_id], [], 5)
            assert [job.id for job in again] == [held.id]
            # the holder dies (its lease expires): reaping frees its slot with its job
            await conn.execute(
                "update graphile_worker._zodworker_pools set lease_seconds = 3,"
                " lease_expires_at = now() - interval '1 second' where pool_id = 'holder'"
            )
            leases = LeaseStore(database, heartbeat=1.0, lease=3.0)
            try:
                assert await anyio.to_thread.run_sync(leases.reap) == [held.id]
            finally:
                leases.close()
            assert await _count(conn, slots) == 0
    finally:
        await database.close()
