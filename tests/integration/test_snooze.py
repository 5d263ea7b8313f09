"""Snoozing from a handler (``raise Snooze(seconds)``): the job runs again later without
using up an attempt and without an error, and frees its named queue and its limit slots
meanwhile, against real PostgreSQL."""

from __future__ import annotations

import itertools
import time
from collections import Counter
from typing import Any

import psycopg
import pytest

from tests.support.dbtools import wait_until
from tests.support.pools import pool_options
from zodworker import Events, JobHelpers, JobSpecError, Limit, Snooze, Store, WorkerPool

pytestmark = pytest.mark.anyio


async def _row(conn: psycopg.AsyncConnection[Any], job_id: int) -> tuple[Any, ...] | None:
    cur = await conn.execute(
        "select attempts, last_error, run_at > now(), locked_by from graphile_worker.jobs"
        " where id = %s",
        (job_id,),
    )
    return await cur.fetchone()


async def test_a_snoozed_job_runs_again_later_with_its_attempts_and_no_error(
    db_url: str,
) -> None:
    runs: list[tuple[int, float]] = []
    outcomes: Counter[str] = Counter()

    async def patient(payload: Any, helpers: JobHelpers) -> None:
        runs.append((helpers.job.attempts, time.monotonic()))
        if len(runs) <= 3:
            raise Snooze(0.3)

    events = Events()
    events.on("job:complete", lambda event: outcomes.update([event.data["outcome"]]))
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        job = await Store().add_job(conn, "patient", {}, max_attempts=1)
        options = pool_options(db_url, concurrency=2, events=events)
        async with WorkerPool({"patient": patient}, options):
            await wait_until(lambda: _ran(runs, 1), what="the first run")
            # between runs: waiting, its attempt given back, no error recorded
            await wait_until(lambda: _waiting(conn, job.id), what="the job back, snoozed")
            await wait_until(lambda: _ran(runs, 4), within=10, what="four runs")
            await wait_until(lambda: _gone(conn, job.id), what="the job done")
    # one attempt allowed, four runs: snoozing used none of them
    assert [attempts for attempts, _ in runs] == [1, 1, 1, 1]
    gaps = [b - a for (_, a), (_, b) in itertools.pairwise(runs)]
    assert all(gap >= 0.25 for gap in gaps), gaps
    assert outcomes == {"snoozed": 3, "success": 1}


async def _ran(runs: list[Any], n: int) -> bool:
    return len(runs) >= n


async def _waiting(conn: psycopg.AsyncConnection[Any], job_id: int) -> bool:
    row = await _row(conn, job_id)
    return row is not None and row[0] == 0 and row[1] is None and row[2] and row[3] is None


async def _gone(conn: psycopg.AsyncConnection[Any], job_id: int) -> bool:
    return await _row(conn, job_id) is None


async def test_a_snoozed_job_frees_its_named_queue_and_its_limit_slot(db_url: str) -> None:
    one = Limit("one-at-a-time", concurrency=1)
    order: list[str] = []

    async def step(payload: Any, helpers: JobHelpers) -> None:
        order.append(payload["name"])
        if payload["name"].endswith("first") and order.count(payload["name"]) == 1:
            raise Snooze(0.5)

    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        store = Store()
        for name in ("first", "second"):  # a named queue: one at a time, in order
            await store.add_job(conn, "step", {"name": name}, queue_name="serial")
        for name in ("limited-first", "limited-second"):
            payload = {"name": name}
            await store.add_job(conn, "step", payload, limits=[one])
        async with WorkerPool({"step": step}, pool_options(db_url, concurrency=4)):
            await wait_until(lambda: _ran(order, 6), within=10, what="every run")
    # while "first" slept, the queue ran "second", and the limit's one slot ran
    # "limited-second"; then each first job ran again
    serial = [name for name in order if not name.startswith("limited")]
    assert serial == ["first", "second", "first"]
    limited = [name for name in order if name.startswith("limited")]
    assert limited == ["limited-first", "limited-second", "limited-first"]


def test_a_snooze_needs_a_number_of_seconds() -> None:
    for bad in (-1, float("nan"), "5", True):
        with pytest.raises(JobSpecError, match="seconds"):
            Snooze(bad)  # type: ignore[arg-type]
    assert Snooze(2).seconds == 2.0
