"""Draining many jobs in named queues with two pools that keep a local buffer: every job
runs exactly once, no two jobs of one queue overlap, and each queue runs in its order.

This guards the fetch path (buffering, fetching ahead, batched completions) against the
faults a faster fetch could bring: a job lost, run twice, or run out of its queue's order.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

import psycopg
import pytest

from tests.support.dbtools import count_jobs, wait_until
from tests.support.pools import pool_options
from zodworker import Event, Events, JobHelpers, JobSpec, Store, WorkerPool

pytestmark = pytest.mark.anyio

QUEUES = 20
PER_QUEUE = 1_000


async def test_two_buffering_pools_drain_20000_jobs_in_20_queues_in_order(db_url: str) -> None:
    # Each job's run_at is its place in its queue (all in the past), so the order a queue
    # must run in is fully determined: (priority, run_at) with no ties.
    base = datetime.now(UTC) - timedelta(hours=1)
    specs = [
        JobSpec(
            identifier="step",
            queue_name=f"q{queue}",
            payload={"q": queue, "n": n},
            run_at=base + timedelta(milliseconds=n),
        )
        for n in range(PER_QUEUE)
        for queue in range(QUEUES)
    ]
    runs: dict[int, list[tuple[int, float, float, str]]] = defaultdict(list)
    ahead: Counter[str] = Counter()  # fetches started while the pool still held jobs
    ran: Counter[tuple[int, int]] = Counter()

    def make_step(pool_name: str) -> Any:
        async def step(payload: Any, helpers: JobHelpers) -> None:
            started = time.monotonic()
            if payload["n"] % 97 == 0:
                await asyncio.sleep(0)  # let other slots interleave now and then
            ran[(payload["q"], payload["n"])] += 1
            runs[payload["q"]].append((payload["n"], started, time.monotonic(), pool_name))

        return step

    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        store = Store()
        for start in range(0, len(specs), 2_000):
            await store.add_jobs(conn, specs[start : start + 2_000])

        def watch(name: str) -> Events:
            def on_fetch(event: Event) -> None:
                ahead[name] += event.data["buffered"] > 0

            events = Events()
            events.on("worker:getJob:start", on_fetch)
            return events

        pools = [
            WorkerPool(
                {"step": make_step(name)},
                pool_options(
                    db_url,
                    pool_id=name,
                    concurrency=8,
                    local_queue_size=10,
                    local_queue_fetch_ahead="always",  # two pools: "auto" would not
                    events=watch(name),
                    heartbeat_interval=0.5,
                    recovery_timeout=5.0,
                ),
            )
            for name in ("left", "right")
        ]
        async with pools[0], pools[1]:

            async def drained() -> bool:
                return await count_jobs(conn) == 0

            await wait_until(drained, within=120, what="20,000 jobs to be worked off")

    assert len(ran) == QUEUES * PER_QUEUE, "every job ran"
    assert max(ran.values()) == 1, f"jobs ran twice: {[k for k, v in ran.items() if v > 1][:5]}"
    pools_used = set()
    for queue, entries in runs.items():
        entries.sort(key=lambda entry: entry[1])  # by start time
        order = [n for n, *_ in entries]
        assert order == list(range(PER_QUEUE)), f"queue q{queue} ran out of order"
        for (_, _, ended, _), (n, started, _, _) in pairwise(entries):
            assert started >= ended, f"queue q{queue}: job {n} started before the one before ended"
        pools_used.update(pool for *_, pool in entries)
    assert pools_used == {"left", "right"}, "both pools took part"
    assert ahead["left"] > 0 and ahead["right"] > 0, f"both pools fetched ahead: {ahead}"
