"""Pools judged by their own leases: a pool with a short lease never reaps a pool with a long
one, and a handler that blocks the event loop does not cost its pool the lease (renewals run
in a thread of their own)."""

from __future__ import annotations

import time
from typing import Any

import psycopg
import pytest

from tests.support.dbtools import wait_until
from tests.support.pools import pool_options
from zodworker import Event, JobHelpers, JobSpec, Store, WorkerOptions, WorkerPool

pytestmark = pytest.mark.anyio


def options(url: str, pool_id: str, heartbeat: float, lease: float) -> WorkerOptions:
    return pool_options(
        url,
        pool_id=pool_id,
        poll_interval=0.1,
        heartbeat_interval=heartbeat,
        recovery_timeout=lease,
    )


async def test_pools_with_different_leases_and_a_blocked_loop_are_never_reaped(
    db_url: str,
) -> None:
    starts: list[tuple[str, int, float]] = []
    recovered: list[Event] = []
    lost: list[Event] = []

    def blocking(payload: Any, helpers: JobHelpers) -> None:  # a plain function: a thread
        starts.append((helpers.job.locked_by or "", payload["n"], time.monotonic()))
        time.sleep(payload["seconds"])

    async def blocks_the_loop(payload: Any, helpers: JobHelpers) -> None:
        starts.append((helpers.job.locked_by or "", payload["n"], time.monotonic()))
        time.sleep(payload["seconds"])  # noqa: ASYNC251  # wrong here, but it happens

    tasks = {"slow": blocking, "hog": blocks_the_loop}
    eager = WorkerPool({}, options(db_url, "eager", heartbeat=0.05, lease=0.3))
    patient = WorkerPool(tasks, options(db_url, "patient", heartbeat=1.0, lease=4.0))
    for pool in (eager, patient):
        pool.events.on("pool:recovered", recovered.append)
        pool.events.on("pool:leaseLost", lost.append)
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        await Store().add_jobs(
            conn,
            [
                JobSpec(identifier="slow", payload={"n": 1, "seconds": 3}),
                JobSpec(identifier="hog", payload={"n": 2, "seconds": 6}),
            ],
        )
    await eager.start()
    await patient.start()
    try:

        async def both_done() -> bool:
            async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as c:
                cur = await c.execute("select count(*) from graphile_worker._private_jobs")
                row = await cur.fetchone()
            return row is not None and row[0] == 0

        await wait_until(both_done, within=30, what="both jobs to finish")
    finally:
        await patient.stop()
        await eager.stop()
    print(
        f"\nthe pool with a 0.3 s lease reaped nothing while a 4 s-lease pool ran a 3 s job and"
        f" blocked its event loop for 6 s; runs: {[(lease, n) for lease, n, _ in starts]}"
    )
    assert sorted(n for _, n, _ in starts) == [1, 2], "a job ran twice"
    assert recovered == [] and lost == []
