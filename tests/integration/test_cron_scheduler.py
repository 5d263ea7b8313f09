"""The cron scheduler against a real PostgreSQL, driven by a controllable clock."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from zodworker.cron import MINUTE, CronJob, CronScheduler

pytestmark = pytest.mark.anyio

START = datetime(2030, 6, 1, 12, 0, 30, tzinfo=UTC)


class FakeClock:
    """Time moves only when the test says so; sleepers wake when it passes their instant."""

    def __init__(self, now: datetime) -> None:
        self._now = now
        self._changed = asyncio.Condition()
        self._waiting_for: list[datetime] = []

    def now(self) -> datetime:
        return self._now

    async def sleep_until(self, when: datetime) -> None:
        async with self._changed:
            self._waiting_for.append(when)
            try:
                await self._changed.wait_for(lambda: self._now >= when)
            finally:
                self._waiting_for.remove(when)

    async def advance(self, delta: timedelta) -> None:
        async with self._changed:
            self._now += delta
            self._changed.notify_all()

    async def settle(self, sleepers: int) -> None:
        """Wait until ``sleepers`` schedulers wait for an instant still in the future, i.e.
        they have handled everything up to now."""
        for _ in range(2000):
            if sum(1 for when in self._waiting_for if when > self._now) >= sleepers:
                return
            await asyncio.sleep(0.005)
        raise AssertionError(f"schedulers did not go back to sleep ({self._waiting_for})")


def every(minutes: int) -> Any:
    return lambda ts: ts.minute % minutes == 0


async def cron_jobs(conn: psycopg.AsyncConnection[Any]) -> list[tuple[str, str, bool]]:
    cur = await conn.execute(
        "select j.task_identifier, p.payload->'_cron'->>'ts',"
        " (p.payload->'_cron'->>'backfilled')::bool"
        " from graphile_worker.jobs as j join graphile_worker._private_jobs as p using (id)"
        " order by 2, 1"
    )
    return await cur.fetchall()


async def test_three_schedulers_add_each_occurrence_exactly_once(db_url: str) -> None:
    clock = FakeClock(START)
    items = [
        CronJob("tick", "tick", every(1), payload={"kind": "tick"}),
        CronJob("five", "five", every(5), queue_name="cron", max_attempts=3),
    ]
    pools = [AsyncConnectionPool(db_url, min_size=1, max_size=2, open=False) for _ in range(3)]
    for pool in pools:
        await pool.open()
    schedulers = [
        CronScheduler(items, pool, schema="graphile_worker", clock=clock) for pool in pools
    ]
    tasks = [asyncio.create_task(s.run()) for s in schedulers]
    try:
        await clock.settle(3)
        for _ in range(60):
            await clock.advance(MINUTE)
            await clock.settle(3)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for pool in pools:
            await pool.close()
    async with await psycopg.AsyncConnection.connect(db_url) as conn:
        jobs = await cron_jobs(conn)
        cur = await conn.execute(
            "select run_at, queue_name, max_attempts from graphile_worker.jobs"
            " where task_identifier = 'five' order by run_at limit 1"
        )
        first_five = await cur.fetchone()
    counts = Counter((task, ts) for task, ts, _ in jobs)
    assert set(counts.values()) == {1}  # nothing twice
    ticks = sorted(ts for task, ts, _ in jobs if task == "tick")
    expected = [(START.replace(second=0) + MINUTE * (n + 1)) for n in range(60)]
    assert ticks == [ts.isoformat().replace("+00:00", "Z") for ts in expected]  # none missed
    assert len([1 for task, _, _ in jobs if task == "five"]) == 12
    assert not any(backfilled for _, _, backfilled in jobs)
    assert first_five is not None
    assert first_five[0] == datetime(2030, 6, 1, 12, 5, tzinfo=UTC)  # run_at = scheduled minute
    assert first_five[1:] == ("cron", 3)


async def test_backfill_covers_the_fill_window_only_for_known_items(db_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        # known for days, last ran 3 hours before start: an outage
        last = START.replace(second=0) - timedelta(hours=3)
        for identifier in ("filled", "unfilled"):
            await conn.execute(
                "insert into graphile_worker._private_known_crontabs"
                " (identifier, known_since, last_execution) values (%s, %s, %s)",
                (identifier, last - timedelta(days=3), last),
            )
    items = [
        CronJob("filled", "filled", every(1), fill=2 * 3600),
        CronJob("unfilled", "unfilled", every(1)),
        CronJob("brand_new", "brand_new", every(1), fill=2 * 3600),  # first seen: no backfill
    ]
    clock = FakeClock(START)
    async with AsyncConnectionPool(db_url, min_size=1, max_size=2) as pool:
        task = asyncio.create_task(
            CronScheduler(items, pool, schema="graphile_worker", clock=clock).run()
        )
        try:
            await clock.settle(1)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    async with await psycopg.AsyncConnection.connect(db_url) as conn:
        jobs = await cron_jobs(conn)
        cur = await conn.execute(
            "select identifier, last_execution from graphile_worker._private_known_crontabs"
            " where identifier = 'brand_new'"
        )
        registered = await cur.fetchone()
    backfilled = [ts for task, ts, flag in jobs if task == "filled"]
    assert all(flag for _, _, flag in jobs)
    assert len(backfilled) == 120  # exactly the last two hours, once each
    assert backfilled[0] == "2030-06-01T10:01:00Z"
    assert backfilled[-1] == "2030-06-01T12:00:00Z"
    assert [task for task, _, _ in jobs if task != "filled"] == []
    assert registered == ("brand_new", None)
