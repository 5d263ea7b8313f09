"""A pool cut off from PostgreSQL for longer than its lease, behind a proxy that stops
forwarding (a silent network, not a reset): it aborts its running job before its lease can
expire, another pool takes the job over only after that, no two runs of one job overlap in
the named queue, no job is lost and no queue stays locked.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest

from tests.support.dbtools import wait_until
from tests.support.pools import pool_options
from tests.support.proxy import TcpProxy
from zodworker import Event, JobHelpers, JobSpec, Store, WorkerOptions, WorkerPool

pytestmark = pytest.mark.anyio

HEARTBEAT = 0.2
LEASE = 1.0


@dataclass
class Run:
    lease: str
    n: int
    start: float
    end: float | None = None
    outcome: str = "running"


@pytest.fixture
def proxy(db_url: str) -> Iterator[TcpProxy]:
    proxy = TcpProxy(db_url)
    try:
        yield proxy
    finally:
        proxy.close()


def options(url: str, pool_id: str) -> WorkerOptions:
    return pool_options(
        url,
        pool_id=pool_id,
        concurrency=2,
        poll_interval=0.1,
        heartbeat_interval=HEARTBEAT,
        recovery_timeout=LEASE,
        graceful_shutdown_abort_timeout=1.0,
    )


@asynccontextmanager
async def started(pool: WorkerPool) -> AsyncIterator[WorkerPool]:
    await pool.start()
    try:
        yield pool
    finally:
        await pool.stop()


async def scalar(url: str, query: str) -> Any:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        row = await (await conn.execute(query)).fetchone()
    assert row is not None
    return row[0]


async def test_a_pool_cut_off_past_its_lease_never_overlaps_the_pool_that_takes_over(
    db_url: str, proxy: TcpProxy
) -> None:
    runs: list[Run] = []
    lost: list[Event] = []

    async def work(payload: Any, helpers: JobHelpers) -> None:
        run = Run(helpers.job.locked_by or "", payload["n"], time.monotonic())
        runs.append(run)
        try:
            await asyncio.sleep(payload["seconds"])
        except asyncio.CancelledError:
            run.end, run.outcome = time.monotonic(), "aborted"
            raise
        run.end, run.outcome = time.monotonic(), "done"

    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        specs = [JobSpec(identifier="work", queue_name="serial", payload={"n": 0, "seconds": 3})]
        specs += [
            JobSpec(identifier="work", queue_name="serial", payload={"n": n, "seconds": 0.05})
            for n in range(1, 11)
        ]
        await Store().add_jobs(conn, specs)

    cut_off = WorkerPool({"work": work}, options(proxy.url(db_url), "pool-a"))
    cut_off.events.on("pool:leaseLost", lost.append)
    other = WorkerPool({"work": work}, options(db_url, "pool-b"))
    async with started(cut_off):
        await wait_until(lambda: _true(bool(runs)), what="pool A to start job 0")
        assert runs[0].lease == "pool-a" and runs[0].n == 0
        async with started(other):
            await asyncio.sleep(0.3)
            cut_at = time.monotonic()
            proxy.cut()
            await wait_until(
                lambda: _true(any(r.n == 0 and r.lease == "pool-b" for r in runs)),
                within=10,
                what="pool B to take job 0 over",
            )
            await asyncio.sleep(1.0)
            proxy.heal()
            healed_at = time.monotonic()
            await wait_until(
                lambda: _true(sum(r.outcome == "done" for r in runs) == 11),
                within=30,
                what="every job to finish",
            )
            await wait_until(
                lambda: _no_rows(db_url, "graphile_worker._private_jobs"), what="no job left"
            )

    first, takeover = runs[0], next(r for r in runs if r.n == 0 and r.lease == "pool-b")
    ordered = sorted(runs, key=lambda r: r.start)
    gaps = [b.start - (a.end or b.start) for a, b in itertools.pairwise(ordered)]
    print(
        f"\ncut {healed_at - cut_at:.1f}s; pool A aborted job 0 {(first.end or 0) - cut_at:.2f}s"
        f" after the cut (lease {LEASE}s, heartbeat {HEARTBEAT}s); pool B started it"
        f" {takeover.start - cut_at:.2f}s after the cut; smallest gap between two runs in the"
        f" serial queue {min(gaps) * 1000:.0f} ms (negative = overlap); runs {len(runs)}"
    )
    assert first.outcome == "aborted" and first.end is not None and first.end < takeover.start
    assert min(gaps) >= 0, "two runs overlapped in a named queue"
    done = sorted(r.n for r in runs if r.outcome == "done")
    assert done == list(range(11)), "a job was lost or completed twice"
    assert lost and lost[0].data["lease_id"] == "pool-a"
    locked = await scalar(
        db_url,
        "select count(*) from graphile_worker._private_job_queues where locked_by is not null",
    )
    assert locked == 0, "a named queue stayed locked"


async def _no_rows(url: str, table: str) -> bool:
    return not await scalar(url, f"select exists (select 1 from {table})")


async def _true(value: bool) -> bool:
    return value
