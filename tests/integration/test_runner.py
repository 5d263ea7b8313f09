"""The worker pool against a real PostgreSQL: fetching, ordering, queues, flags, LISTEN,
timeouts, batch jobs, shutdown, helpers, crash recovery and events.

Tests wait on events (from handlers or from the pool's ``events``) or poll the database up
to a deadline; none of them sleeps for a fixed time to let something happen.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import anyio.to_thread
import psycopg
import pytest

from tests.support.dbtools import count_jobs, wait_until
from tests.support.pools import pool_options
from zodworker import (
    Event,
    Events,
    Job,
    JobHelpers,
    JobSpec,
    Store,
    Task,
    WorkerError,
    WorkerOptions,
    WorkerPool,
    run,
    run_once,
)
from zodworker.worker.tasks import Handler

pytestmark = pytest.mark.anyio

AsyncConn = psycopg.AsyncConnection[Any]
Tasks = Mapping[str, Handler | Task]

JOBS = "graphile_worker._private_jobs"
QUEUES = "graphile_worker._private_job_queues"
POOLS = "graphile_worker._zodworker_pools"
E = timedelta(seconds=math.e)  # the first retry delay: exp(1) seconds
SLACK = timedelta(milliseconds=5)  # rounding of exp() * interval


# ------------------------------------------------------------------------------------------
# helpers


options = pool_options


class EventLog:
    """Records every event a pool emits; tests wait for conditions on the record."""

    def __init__(self, events: Events) -> None:
        self.events: list[Event] = []
        self._changed = asyncio.Event()
        events.on("*", self._record)

    def _record(self, event: Event) -> None:
        self.events.append(event)
        self._changed.set()

    def names(self) -> list[str]:
        return [e.name for e in self.events]

    def named(self, name: str, since: int = 0) -> list[Event]:
        return [e for e in self.events[since:] if e.name == name]

    def index(self, name: str) -> int:
        """Position of the first ``name`` event (ValueError if none)."""
        return self.names().index(name)

    def idle_and_listening(self) -> bool:
        """LISTEN is up and the pool is idle: no fetch in flight, and one finished since LISTEN
        came up. (A notification that arrives during a fetch can be lost; see
        test_a_notification_during_a_fetch_is_not_lost. Tests that rely on LISTEN wait for
        this before adding jobs.)"""
        if not self.named("pool:listen:success"):
            return False
        since = self.index("pool:listen:success")
        starts = len(self.named("worker:getJob:start"))
        ends = len(self.named("worker:getJob:empty")) + len(self.named("worker:getJob:error"))
        return starts == ends and bool(self.named("worker:getJob:empty", since=since))

    async def wait_for(
        self, predicate: Callable[[], object], *, within: float = 5.0, what: str = "an event"
    ) -> None:
        try:
            with anyio.fail_after(within):
                while not predicate():
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(f"timed out after {within}s waiting for {what}") from None


@asynccontextmanager
async def running(tasks: Tasks, opts: WorkerOptions) -> AsyncIterator[WorkerPool]:
    """A started pool, stopped on exit (forcefully if a stuck handler blocks a graceful stop,
    so a failing test cannot hang the run)."""
    pool = await run(tasks, opts)
    try:
        yield pool
    finally:
        with anyio.move_on_after(10) as scope:
            await pool.stop()
        if scope.cancelled_caught:
            await pool.stop(forceful=True)


async def scalar(conn: AsyncConn, query: str, params: Any = None) -> Any:
    cur = await conn.execute(query.encode(), params)
    row = await cur.fetchone()
    assert row is not None
    return row[0]


async def db_now(conn: AsyncConn) -> datetime:
    value = await scalar(conn, "select now()")
    assert isinstance(value, datetime)
    return value


async def get_job(conn: AsyncConn, job_id: int) -> Job | None:
    return await Store().get_job(conn, job_id)


async def must_get(conn: AsyncConn, job_id: int) -> Job:
    job = await get_job(conn, job_id)
    assert job is not None, f"job {job_id} is gone"
    return job


async def wait_job_gone(conn: AsyncConn, job_id: int, within: float = 10.0) -> None:
    async def gone() -> bool:
        return await get_job(conn, job_id) is None

    await wait_until(gone, within=within, what=f"job {job_id} to be completed")


async def wait_job_failed(conn: AsyncConn, job_id: int, within: float = 10.0) -> Job:
    """Wait until the job's failure is written (unlocked with an error); return it."""

    async def failed() -> bool:
        job = await get_job(conn, job_id)
        return job is not None and job.last_error is not None and job.locked_at is None

    await wait_until(failed, within=within, what=f"job {job_id}'s failure to be written")
    return await must_get(conn, job_id)


async def wait_set(event: asyncio.Event | threading.Event, within: float = 5.0) -> None:
    if isinstance(event, threading.Event):
        assert await anyio.to_thread.run_sync(event.wait, within), "thread event never set"
        return
    with anyio.fail_after(within):
        await event.wait()


# ------------------------------------------------------------------------------------------
# 1. run_once


async def test_run_once_runs_due_jobs_records_the_failure_and_returns(
    conn: AsyncConn, store: Store, db_url: str
) -> None:
    ran: list[Any] = []

    async def ok(payload: Any, helpers: JobHelpers) -> None:
        ran.append(payload["n"])

    async def bad(payload: Any, helpers: JobHelpers) -> None:
        ran.append(payload["n"])
        raise ValueError(f"no good {payload['n']}")

    for n in range(5):
        await store.add_job(conn, "ok", {"n": n})
    future = await store.add_job(
        conn, "ok", {"n": "future"}, run_at=datetime.now(UTC) + timedelta(hours=1)
    )
    failing = await store.add_job(conn, "bad", {"n": "bad"}, queue_name="bad-q", max_attempts=5)
    dead = await store.add_job(conn, "bad", {"n": "dead"}, max_attempts=1)

    before = await db_now(conn)
    with anyio.fail_after(15):
        await run_once({"ok": ok, "bad": bad}, options(db_url, concurrency=3))
    after = await db_now(conn)

    assert Counter(ran) == Counter([0, 1, 2, 3, 4, "bad", "dead"])
    assert await count_jobs(conn) == 3  # future, failing and dead remain

    job = await must_get(conn, failing.id)
    assert job.last_error is not None
    first, *traceback = job.last_error.splitlines()
    assert first == "ValueError: no good bad"  # the line graphile-worker would store
    assert "Traceback (most recent call last):" in traceback  # then where it was raised
    assert any("in bad" in line for line in traceback)
    assert job.attempts == 1
    assert (job.locked_at, job.locked_by) == (None, None)
    assert before + E - SLACK <= job.run_at <= after + E + SLACK
    queue_lock = await scalar(conn, f"select locked_by from {QUEUES} where queue_name = 'bad-q'")
    assert queue_lock is None

    untouched = await must_get(conn, future.id)
    assert (untouched.attempts, untouched.last_error, untouched.locked_at) == (0, None, None)

    gone = await must_get(conn, dead.id)
    assert (gone.attempts, gone.max_attempts) == (1, 1)
    assert gone.last_error is not None
    assert gone.last_error.splitlines()[0] == "ValueError: no good dead"
    assert not gone.is_available

    # make both failed jobs due again: only the one with attempts left runs
    await conn.execute(
        f"update {JOBS} set run_at = now() - interval '1 second' where id = any(%s)",
        ([failing.id, dead.id],),
    )
    ran.clear()
    with anyio.fail_after(15):
        await run_once({"ok": ok, "bad": bad}, options(db_url))
    assert ran == ["bad"]
    assert (await must_get(conn, dead.id)).attempts == 1
    assert (await must_get(conn, failing.id)).attempts == 2


async def test_run_once_waits_for_pending_results_before_deciding_it_is_done(
    conn: AsyncConn, store: Store, db_url: str
) -> None:
    first = await store.add_job(conn, "q", {"n": 1}, queue_name="serial", priority=0)
    second = await store.add_job(conn, "q", {"n": 2}, queue_name="serial", priority=1)
    ran: list[int] = []
    first_started = asyncio.Event()
    row_locked = asyncio.Event()

    async def handler(payload: Any, helpers: JobHelpers) -> None:
        ran.append(payload["n"])
        if payload["n"] == 1:
            first_started.set()
            await row_locked.wait()

    opts = options(db_url)
    log = EventLog(opts.events)
    complete_at: list[int] = []
    opts.events.on(
        "job:complete",
        lambda e: complete_at.append(len(log.events)) if e.job and e.job.id == first.id else None,
    )

    async with (
        await psycopg.AsyncConnection.connect(db_url) as blocker,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(run_once, {"q": handler}, opts)
        await wait_set(first_started)
        # Hold a row lock on the first job: its completion (a DELETE) waits for it, as a slow
        # write would. The queue stays locked by the pool until that write commits.
        await blocker.execute(f"select 1 from {JOBS} where id = %s for update", (first.id,))
        row_locked.set()
        await log.wait_for(
            lambda: complete_at and log.named("worker:getJob:empty", since=complete_at[0]),
            what="a fetch after the first job finished",
        )
        await blocker.commit()
    assert ran == [1, 2]
    assert await get_job(conn, second.id) is None


# ------------------------------------------------------------------------------------------
# 2. ordering


@pytest.mark.parametrize(
    "local_queue_size",
    [-1, 10],
)
async def test_jobs_run_by_priority_then_run_at(
    conn: AsyncConn, store: Store, db_url: str, local_queue_size: int
) -> None:
    now = await db_now(conn)
    for name, priority, age in [
        ("a", 1, 10),
        ("b", 0, 5),
        ("c", 0, 20),
        ("d", -1, 1),
        ("e", 1, 30),
    ]:
        await store.add_job(
            conn, "t", {"name": name}, priority=priority, run_at=now - timedelta(seconds=age)
        )
    order: list[str] = []

    async def handler(payload: Any, helpers: JobHelpers) -> None:
        order.append(payload["name"])

    with anyio.fail_after(15):
        await run_once(
            {"t": handler}, options(db_url, concurrency=1, local_queue_size=local_queue_size)
        )
    assert order == ["d", "c", "b", "e", "a"]


async def test_a_future_job_runs_once_due_and_not_before(
    conn: AsyncConn, store: Store, db_url: str
) -> None:
    started_at: list[datetime] = []
    done = asyncio.Event()

    async def handler(payload: Any, helpers: JobHelpers) -> None:
        rows = await helpers.query("select clock_timestamp()")
        started_at.append(rows[0][0])
        done.set()

    async with running({"t": handler}, options(db_url, poll_interval=0.05)):
        run_at = await db_now(conn) + timedelta(seconds=0.3)
        job = await store.add_job(conn, "t", run_at=run_at)
        await wait_set(done)
    assert len(started_at) == 1
    assert job.run_at <= started_at[0] < job.run_at + timedelta(seconds=3)


# ------------------------------------------------------------------------------------------
# 3. named queues


class Concurrency:
    """Tracks how many handlers run at once, per queue name (None: no queue)."""

    def __init__(self) -> None:
        self.now: Counter[str | None] = Counter()
        self.peak: Counter[str | None] = Counter()
        self.runs: Counter[int] = Counter()

    def enter(self, job: Job) -> None:
        self.runs[job.id] += 1
        self.now[job.queue_name] += 1
        self.peak[job.queue_name] = max(self.peak[job.queue_name], self.now[job.queue_name])

    def leave(self, job: Job) -> None:
        self.now[job.queue_name] -= 1


async def test_named_queue_is_serial_while_unqueued_jobs_run_concurrently(
    conn: AsyncConn, store: Store, db_url: str
) -> None:
    specs = []
    for i in range(60):
        specs.append(JobSpec(identifier="t", payload={"i": i}, queue_name="serial"))
        specs.append(JobSpec(identifier="t", payload={"i": i}))
    jobs = await store.add_jobs(conn, specs)
    seen = Concurrency()
    overlapped = asyncio.Event()  # two unqueued handlers were in flight at once

    async def handler(payload: Any, helpers: JobHelpers) -> None:
        job = helpers.job
        seen.enter(job)
        try:
            if job.queue_name is None:
                if seen.now[None] >= 2:
                    overlapped.set()
                with anyio.fail_after(5):  # the first unqueued job waits for a second one
                    await overlapped.wait()
            await anyio.sleep(0.001)  # a little work, so overlapping runs would show
        finally:
            seen.leave(job)

    opts = options(db_url, concurrency=10, local_queue_size=20)
    async with running({"t": handler}, opts):
        await wait_until(lambda: _no_jobs(conn), within=30, what="all 120 jobs to complete")
    assert seen.peak["serial"] == 1
    assert seen.peak[None] > 1
    assert set(seen.runs) == {job.id for job in jobs}
    assert set(seen.runs.values()) == {1}


async def _no_jobs(conn: AsyncConn) -> bool:
    return await count_jobs(conn) == 0


async def test_two_queues_are_each_serial(conn: AsyncConn, store: Store, db_url: str) -> None:
    specs = [
        JobSpec(identifier="t", payload={"i": i}, queue_name=queue)
        for i in range(30)
        for queue in ("left", "right")
    ]
    jobs = await store.add_jobs(conn, specs)
    seen = Concurrency()

    async def handler(payload: Any, helpers: JobHelpers) -> None:
        seen.enter(helpers.job)
        try:
            await anyio.sleep(0.001)
        finally:
            seen.leave(helpers.job)

    async with running({"t": handler}, options(db_url, concurrency=4, local_queue_size=20)):
        await wait_until(lambda: _no_jobs(conn), within=30, what="all 60 jobs to complete")
    assert (seen.peak["left"], seen.peak["right"]) == (1, 1)
    assert set(seen.runs) == {job.id for job in jobs}
    assert set(seen.runs.values()) == {1}


# ------------------------------------------------------------------------------------------
# 4. forbidden flags


async def test_forbidden_flags_list_skips_flagged_jobs(
    conn: AsyncConn, store: Store, db_url: str
) -> None:
    slow = await store.add_job(conn, "t", {"name": "slow"}, flags=["slow"])
    both = await store.add_job(conn, "t", {"name": "both"}, flags=["gpu", "slow"])
    await store.add_job(conn, "t", {"name": "other"}, flags=["other"])
    await store.add_job(conn, "t", {"name": "plain"})
    ran: list[str] = []

    async def handler(payload: Any, helpers: JobHelpers) -> None:
        ran.append(payload["name"])

    with anyio.fail_after(15):
        await run_once({"t": handler}, options(db_url, forbidden_flags=["slow"]))
    assert sorted(ran) == ["other", "plain"]
    for job_id in (slow.id, both.id):
        job = await must_get(conn, job_id)
        assert (job.attempts, job.locked_by, job.last_error) == (0, None, None)


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_forbidden_flags_callable_is_evaluated_before_each_fetch(
    conn: AsyncConn, store: Store, db_url: str, kind: str
) -> None:
    forbidden = ["slow"]

    def sync_flags() -> list[str]:
        return list(forbidden)

    async def async_flags() -> list[str]:
        await anyio.lowlevel.checkpoint()
        return list(forbidden)

    ran: dict[str, asyncio.Event] = {"slow": asyncio.Event(), "plain": asyncio.Event()}

    async def handler(payload: Any, helpers: JobHelpers) -> None:
        ran[payload["name"]].set()

    slow = await store.add_job(conn, "t", {"name": "slow"}, flags=["slow"])
    await store.add_job(conn, "t", {"name": "plain"}, flags=["fast"])
    opts = options(db_url, forbidden_flags=sync_flags if kind == "sync" else async_flags)
    log = EventLog(opts.events)
    async with running({"t": handler}, opts):
        await wait_set(ran["plain"])
        mark = len(log.events)
        await log.wait_for(
            lambda: len(log.named("worker:getJob:empty", since=mark)) >= 3,
            what="three more fetches",
        )
        assert not ran["slow"].is_set()
        job = await must_get(conn, slow.id)
        assert (job.attempts, job.locked_by) == (0, None)

        forbidden.clear()
        await wait_set(ran["slow"])
        await wait_job_gone(conn, slow.id)


# ------------------------------------------------------------------------------------------
# 5. LISTEN/NOTIFY


async def test_a_notification_wakes_an_idle_pool(
    conn: AsyncConn, store: Store, db_url: str
) -> None:
    done = asyncio.Event()

    async def handler(payload: Any, helpers: JobHelpers) -> None:
        done.set()

    opts = options(db_url, poll_interval=30)  # polling cannot explain a prompt run
    log = EventLog(opts.events)
    async with running({"t": handler}, opts):
        await log.wait_for(log.idle_and_listening, what="the pool to listen and go idle")
        job = await store.add_job(conn, "t")
        await wait_set(done, within=5)
        await wait_job_gone(conn, job.id)
    notes = log.named("pool:listen:notification")
    assert any(e.data["channel"] == "jobs:insert" for e in notes)


async def test_a_pool_running_a_job_now_and_then_does_not_fetch_again_after_each_one(
    conn: AsyncConn, store: Store, db_url: str
) -> None:
    # Completing a job without a queue frees nothing a fetch could find, so the pool makes
    # one fetch per notified job (its claim) and no empty one after the completion.
    async def handler(payload: Any, helpers: JobHelpers) -> None:
        pass

    # four slots: a fetch that finds one job is partial, so nothing else says "look again"
    # (a fetch filling every waiting slot is followed by another, which may find more)
    # no polls during the test, and a lease no late heartbeat can lose (a regained lease
    # nudges the queue)
    opts = options(
        db_url, concurrency=4, poll_interval=30, heartbeat_interval=1, recovery_timeout=30
    )
    log = EventLog(opts.events)
    async with running({"t": handler}, opts):
        await log.wait_for(log.idle_and_listening, what="the pool to listen and go idle")
        first = len(log.events)
        for _ in range(6):
            job = await store.add_job(conn, "t")
            await wait_job_gone(conn, job.id)
        since = log.events[first:]
    # the add after a completion gives a follow-up fetch time to start, so count up to the
    # last completion (the last job has no add after it)
    completions = [i for i, e in enumerate(since) if e.name == "job:complete"]
    assert len(completions) == 6
    before_last = [e.name for e in since[: completions[-1]]]
    fetches, empty = (
        before_last.count("worker:getJob:start"),
        before_last.count("worker:getJob:empty"),
    )
    assert (fetches, empty) == (6, 0)


async def test_a_completion_that_frees_a_named_queue_fetches_its_next_job_at_once(
    conn: AsyncConn, store: Store, db_url: str
) -> None:
    # A fetch takes one job per named queue; the next one becomes runnable when the first
    # completes, and the pool looks for it then, not at its next poll.
    order: list[int] = []

    async def handler(payload: Any, helpers: JobHelpers) -> None:
        order.append(payload["i"])

    opts = options(db_url, poll_interval=30)
    log = EventLog(opts.events)
    async with running({"t": handler}, opts):
        await log.wait_for(log.idle_and_listening, what="the pool to listen and go idle")
        specs = [JobSpec(identifier="t", payload={"i": i}, queue_name="q") for i in range(4)]
        await store.add_jobs(conn, specs)
        await wait_until(lambda: _no_jobs(conn), within=10, what="the queue's four jobs to run")
    assert sorted(order) == [0, 1, 2, 3]  # one after another (same run_at: any order)


async def test_a_rolled_back_job_never_runs(conn: AsyncConn, store: Store, db_url: str) -> None:
    ran: list[str] = []
    done = asyncio.Event()

    async def handler(payload: Any, helpers: JobHelpers) -> None:
        ran.append(payload["name"])
        if payload["name"] == "committed":
            done.set()

    opts = options(db_url, poll_interval=30)
    log = EventLog(opts.events)
    async with running({"t": handler}, opts):
        await log.wait_for(log.idle_and_listening, what="the pool to listen and go idle")
        async with conn.transaction(force_rollback=True):
            await store.add_job(conn, "t", {"name": "rolled back"})
        await store.add_job(conn, "t", {"name": "committed"})
        await wait_set(done)
    assert ran == ["committed"]
    assert await count_jobs(conn) == 0


async def test_a_notification_during_a_fetch_is_not_lost(
    conn: AsyncConn, store: Store, db_url: str
) -> None:
    entered = asyncio.Event()
    release = asyncio.Event()
    calls = 0

    async def flags() -> list[str]:
        # The first fetch is held here until the test has added a job and the notification
        # arrived; that fetch then does not see the job (its flag is forbidden this once),
        # as a fetch whose snapshot predates the insert would not.
        nonlocal calls
        calls += 1
        if calls == 1:
            entered.set()
            await release.wait()
            return ["late"]
        return []

    done = asyncio.Event()

    async def handler(payload: Any, helpers: JobHelpers) -> None:
        done.set()

    opts = options(db_url, poll_interval=30, forbidden_flags=flags)
    log = EventLog(opts.events)
    async with running({"t": handler}, opts):
        await wait_set(entered)
        await log.wait_for(lambda: log.named("pool:listen:success"), what="LISTEN")
        await store.add_job(conn, "t", flags=["late"])
        await log.wait_for(
            lambda: log.named("pool:listen:notification"), what="the jobs:insert notification"
        )
        release.set()
        await wait_set(done, within=2)  # well under poll_interval


# ------------------------------------------------------------------------------------------
# 6. per-task timeout


async def test_async_task_timeout_fails_the_job_and_aborts_the_handler(
    conn: AsyncConn, store: Store, db_url: str
) -> None:
    handed: list[JobHelpers] = []

    async def forever(payload: Any, helpers: JobHelpers) -> None:
        try:
            await asyncio.Event().wait()
        finally:
            handed.append(helpers)

    opts = options(db_url)
    log = EventLog(opts.events)
    job = await store.add_job(conn, "slow")
    async with running({"slow": Task(forever, timeout=0.2)}, opts):
        await log.wait_for(lambda: log.named("job:timeout"), what="job:timeout")
        failed = await wait_job_failed(conn, job.id)
    timeout_event = log.named("job:timeout")[0]
    assert timeout_event.job is not None and timeout_event.job.id == job.id
    assert failed.last_error is not None and "timed out" in failed.last_error
    assert failed.last_error.startswith("JobTimeout: task timed out after")
    assert failed.attempts == 1
    assert failed.run_at > await db_now(conn)
    assert len(handed) == 1
    assert handed[0].abort_signal.aborted
    assert handed[0].abort_signal.reason == "timeout"


async def test_async_task_timeout_aborts_before_cancelling(
    conn: AsyncConn, store: Store, db_url: str
) -> None:
    aborted_in_cleanup: list[bool] = []

    async def forever(payload: Any, helpers: JobHelpers) -> None:
        try:
            await asyncio.Event().wait()
        finally:
            aborted_in_cleanup.append(helpers.abort_signal.aborted)

    opts = options(db_url)
    log = EventLog(opts.events)
    await store.add_job(conn, "slow")
    async with running({"slow": Task(forever, timeout=0.2)}, opts):
        await log.wait_for(lambda: log.named("job:timeout"), what="job:timeout")
    assert aborted_in_cleanup == [True]


async def test_sync_task_timeout_fails_the_job_and_signals_the_thread(
    conn: AsyncConn, store: Store, db_url: str
) -> None:
    signalled: list[bool] = []
    finished = threading.Event()

    def blocking(payload: Any, helpers: JobHelpers) -> None:
        signalled.append(helpers.abort_signal.wait_sync(10))
        finished.set()

    opts = options(db_url)
    log = EventLog(opts.events)
    job = await store.add_job(conn, "slow")
    async with running({"slow": Task(blocking, timeout=0.2)}, opts):
        await log.wait_for(lambda: log.named("job:timeout"), what="job:timeout")
        await wait_set(finished)
        failed = await wait_job_failed(conn, job.id)
    assert signalled == [True]
    assert failed.last_error is not None and "timed out" in failed.last_error
    assert failed.attempts == 1


# ------------------------------------------------------------------------------------------
# 7. batch jobs


async def test_batch_job_keeps_only_failed_elements(
    conn: AsyncConn, store: Store, db_url: str
) -> None:
    async def handler(payload: list[int], helpers: JobHelpers) -> list[Any]:
        return [ValueError("x" if n == 2 else "y") if n % 2 == 0 else None for n in payload]

    partly = await store.add_job(conn, "batch", [1, 2, 3, 4])
    fine = await store.add_job(conn, "batch", [1, 3, 5])
    with anyio.fail_after(15):
        await run_once({"batch": handler}, options(db_url))
    job = await must_get(conn, partly.id)
    assert job.payload == [2, 4]
    assert job.last_error is not None and "2 of 4" in job.last_error
    assert "ValueError: x" in job.last_error and "ValueError: y" in job.last_error
    assert (job.attempts, job.locked_by) == (1, None)
    assert await get_job(conn, fine.id) is None


# ------------------------------------------------------------------------------------------
# 8. max contiguous errors


async def test_repeated_fetch_errors_stop_the_pool_with_a_fatal_error(db_url: str) -> None:
    def broken_flags() -> list[str]:
        raise RuntimeError("flag service down")

    async def handler(payload: Any, helpers: JobHelpers) -> None:
        raise AssertionError("never runs")

    opts = options(db_url, forbidden_flags=broken_flags, max_contiguous_errors=3)
    log = EventLog(opts.events)
    pool = await run({"t": handler}, opts)
    try:
        with anyio.fail_after(10), pytest.raises(WorkerError, match="flag service down"):
            await pool.wait()
    finally:
        await pool.stop()
    assert len(log.named("worker:getJob:error")) == 3
    fatal = log.named("worker:fatalError")
    assert len(fatal) == 1 and isinstance(fatal[0].error, RuntimeError)
    assert log.names()[-1] == "stop"


# ------------------------------------------------------------------------------------------
# 9, 10. shutdown


async def test_graceful_stop_finishes_the_running_job_and_returns_the_fetched_ones(
    conn: AsyncConn, store: Store, db_url: str
) -> None:
    jobs = {n: await store.add_job(conn, "t", {"n": n}) for n in range(5)}
    ran: list[int] = []
    started = asyncio.Event()
    release = asyncio.Event()

    async def handler(payload: Any, helpers: JobHelpers) -> None:
        ran.append(payload["n"])
        started.set()
        await release.wait()

    opts = options(db_url, concurrency=1, local_queue_size=10, graceful_shutdown_abort_timeout=60)
    log = EventLog(opts.events)
    pool = await run({"t": handler}, opts)
    try:
        await wait_set(started)

        async def all_fetched() -> bool:
            held = await scalar(
                conn, f"select count(*) from {JOBS} where locked_by = %s", [pool.pool_id]
            )
            return bool(held == 5)

        await wait_until(all_fetched, what="the pool to fetch all five jobs")
        async with anyio.create_task_group() as tg:
            tg.start_soon(pool.stop)
            await log.wait_for(lambda: log.named("pool:gracefulShutdown"), what="shutdown")
            assert len(ran) == 1
            assert (await must_get(conn, jobs[ran[0]].id)).locked_by == pool.pool_id
            release.set()
    finally:
        release.set()
        await pool.stop()
    assert len(ran) == 1
    assert await get_job(conn, jobs.pop(ran[0]).id) is None
    for job in jobs.values():
        returned = await must_get(conn, job.id)
        assert (returned.attempts, returned.locked_by, returned.locked_at) == (0, None, None)
        assert returned.last_error is None


async def test_graceful_stop_gives_running_handlers_their_abort_signal(
    conn: AsyncConn, store: Store, db_url: str
) -> None:
    started = asyncio.Event()
    reasons: list[str | None] = []

    async def handler(payload: Any, helpers: JobHelpers) -> None:
        started.set()
        await helpers.abort_signal.wait()
        reasons.append(helpers.abort_signal.reason)

    job = await store.add_job(conn, "t")
    pool = await run({"t": handler}, options(db_url, graceful_shutdown_abort_timeout=0.1))
    try:
        await wait_set(started)
        with anyio.fail_after(5):
            await pool.stop()
    finally:
        await pool.stop(forceful=True)
    assert reasons == ["graceful shutdown timed out"]
    assert await get_job(conn, job.id) is None


async def _block_on_event() -> None:
    await asyncio.Event().wait()


async def _block_in_anyio_task_group() -> None:
    async with anyio.create_task_group() as tg:
        tg.start_soon(anyio.sleep_forever)


async def _block_in_asyncio_task_group() -> None:
    async with asyncio.TaskGroup() as tg:
        tg.create_task(asyncio.Event().wait())


async def _block_under_fail_after() -> None:
    with anyio.fail_after(3600):
        await anyio.sleep_forever()


@pytest.mark.parametrize(
    "block",
    [
        _block_on_event,
        _block_in_anyio_task_group,
        _block_in_asyncio_task_group,
        _block_under_fail_after,
    ],
    ids=["event", "anyio-task-group", "asyncio-task-group", "fail-after"],
)
async def test_forceful_stop_fails_the_running_job(
    conn: AsyncConn, store: Store, db_url: str, block: Callable[[], Any]
) -> None:
    started = asyncio.Event()
    aborted_in_cleanup: list[bool] = []

    async def handler(payload: Any, helpers: JobHelpers) -> None:
        started.set()
        try:
            await block()
        finally:
            aborted_in_cleanup.append(helpers.abort_signal.aborted)

    opts = options(db_url)
    log = EventLog(opts.events)
    job = await store.add_job(conn, "t")
    pool = await run({"t": handler}, opts)
    try:
        await wait_set(started)
        with anyio.fail_after(5):
            await pool.stop(forceful=True)
    finally:
        await pool.stop(forceful=True)
    failed = await must_get(conn, job.id)
    assert failed.last_error is not None and "forceful" in failed.last_error
    assert (failed.locked_by, failed.locked_at, failed.attempts) == (None, None, 1)
    assert aborted_in_cleanup == [True]
    assert "pool:forcefulShutdown" in log.names()


async def test_forceful_stop_signals_a_blocked_sync_handler(
    conn: AsyncConn, store: Store, db_url: str
) -> None:
    started = threading.Event()
    signalled: list[bool] = []
    finished = threading.Event()

    def handler(payload: Any, helpers: JobHelpers) -> None:
        started.set()
        signalled.append(helpers.abort_signal.wait_sync(10))
        finished.set()

    job = await store.add_job(conn, "t")
    pool = await run({"t": handler}, options(db_url))
    try:
        await wait_set(started)
        with anyio.fail_after(5):
            await pool.stop(forceful=True)
    finally:
        await pool.stop(forceful=True)
    await wait_set(finished)
    assert signalled == [True]
    failed = await must_get(conn, job.id)
    assert failed.last_error is not None and "forceful" in failed.last_error
    assert (failed.locked_by, failed.attempts) == (None, 1)


async def test_jobs_held_locally_past_local_queue_ttl_are_returned(
    conn: AsyncConn, store: Store, db_url: str
) -> None:
    jobs = [await store.add_job(conn, "t", {"n": n}) for n in range(2)]
    runs: Counter[int] = Counter()
    first_started = asyncio.Event()
    release = asyncio.Event()

    async def handler(payload: Any, helpers: JobHelpers) -> None:
        runs[helpers.job.id] += 1
        first_started.set()
        await release.wait()

    opts = options(db_url, concurrency=1, local_queue_size=10, local_queue_ttl=0.2)
    async with running({"t": handler}, opts) as pool:
        await wait_set(first_started)
        (busy,) = runs
        (other,) = [job.id for job in jobs if job.id != busy]
        assert (await must_get(conn, other)).locked_by == pool.pool_id  # held locally

        async def returned() -> bool:
            job = await must_get(conn, other)
            return job.locked_by is None

        await wait_until(returned, what="the held job to be returned after its ttl")
        job = await must_get(conn, other)
        assert (job.attempts, job.locked_at, job.last_error) == (0, None, None)
        assert runs == {busy: 1}
        release.set()
        await wait_until(lambda: _no_jobs(conn), what="both jobs to run")
    assert runs == {busy: 1, other: 1}


async def test_fetch_ahead_grows_its_batch_holds_at_most_twice_the_cap_and_stops_when_slots_stall(
    conn: AsyncConn, store: Store, db_url: str
) -> None:
    # Quick jobs first, so the pool fetches ahead and its batch grows from local_queue_size
    # towards local_queue_max_size; then every slot blocks. The pool must hold no more than
    # its running jobs plus twice the largest batch, and stop fetching while nothing starts
    # (a pool of stalled or slow jobs does not hoard jobs other pools could run).
    concurrency, size, cap = 4, 5, 20
    await store.add_jobs(conn, [JobSpec(identifier="t", payload={"n": n}) for n in range(3000)])
    release = asyncio.Event()
    started = 0

    async def handler(payload: Any, helpers: JobHelpers) -> None:
        nonlocal started
        started += 1
        if started > 1000:
            await release.wait()

    events = Events()
    log = EventLog(events)
    opts = options(
        db_url,
        concurrency=concurrency,
        local_queue_size=size,
        local_queue_max_size=cap,
        poll_interval=0.05,
        events=events,
    )
    async with running({"t": handler}, opts) as pool:

        async def stalled() -> bool:
            return started >= 1000 + concurrency

        await wait_until(stalled, within=30, what="every slot to block")
        fetches = log.named("worker:getJob:start")
        assert any(e.data["buffered"] > 0 for e in fetches), "quick jobs were fetched ahead"
        asked = {e.data["want"] for e in fetches}
        assert max(asked) > size and asked <= {5, 10, 20}, asked  # doubling, capped
        quiet_since = [len(fetches), time.monotonic()]

        async def quiet() -> bool:  # no fetch for 20 poll intervals
            count = len(log.named("worker:getJob:start"))
            if count != quiet_since[0]:
                quiet_since[:] = [count, time.monotonic()]
            return time.monotonic() - quiet_since[1] > 20 * 0.05

        await wait_until(quiet, within=20, what="the stalled pool to stop fetching")
        held = await scalar(
            conn, f"select count(*) from {JOBS} where locked_by = %s", (pool.pool_id,)
        )
        assert concurrency + size <= held <= concurrency + 2 * cap
        most = max(e.data["buffered"] for e in log.named("worker:getJob:start"))
        assert most <= cap, f"a fetch started while {most} jobs were held"
        release.set()
        await wait_until(lambda: _no_jobs(conn), within=30, what="every job to run")
        await store.add_jobs(conn, [JobSpec(identifier="t", payload={"n": n}) for n in range(50)])
        await wait_until(lambda: _no_jobs(conn), within=30, what="the later jobs to run")
    assert started == 3050
    # a fetch that found nothing puts the batch back to local_queue_size
    names = [e.name for e in log.events if e.name.startswith("worker:getJob:")]
    starts = [e for e in log.events if e.name == "worker:getJob:start"]
    after_empty = [
        starts[names[: i + 1].count("worker:getJob:start")]
        for i, name in enumerate(names)
        if name == "worker:getJob:empty" and names[i + 1 :].count("worker:getJob:start")
    ]
    assert after_empty and {e.data["want"] for e in after_empty} == {size}


async def test_a_batch_cap_equal_to_the_local_queue_keeps_every_fetch_at_that_size(
    conn: AsyncConn, store: Store, db_url: str
) -> None:
    # The same quick jobs, with local_queue_max_size = local_queue_size: fetch-ahead still
    # runs, the batch never grows.
    await store.add_jobs(conn, [JobSpec(identifier="t", payload={"n": n}) for n in range(1000)])

    async def handler(payload: Any, helpers: JobHelpers) -> None:
        return None

    events = Events()
    log = EventLog(events)
    opts = options(db_url, concurrency=4, local_queue_size=5, local_queue_max_size=5, events=events)
    async with running({"t": handler}, opts):
        await wait_until(lambda: _no_jobs(conn), within=30, what="every job to run")
    fetches = log.named("worker:getJob:start")
    assert any(e.data["buffered"] > 0 for e in fetches), "quick jobs were fetched ahead"
    assert {e.data["want"] for e in fetches} == {5}


async def test_a_job_whose_row_cannot_be_decoded_does_not_stop_its_batch_or_the_pool(
    conn: AsyncConn, store: Store, db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # A payload nested deeper than the JSON decoder allows, as raw SQL (or Node) may add it,
    # in the middle of a batch: the other jobs of the batch run, the pool keeps going, and
    # the bad one stays locked under the pool's lease until the pool ends it.
    await store.add_jobs(conn, [JobSpec(identifier="t", payload={"n": n}) for n in range(5)])
    deep = "[" * 2000 + "]" * 2000
    cur = await conn.execute("select id from graphile_worker.add_job('t', %s::json)", (deep,))
    (bad,) = await cur.fetchone()  # type: ignore[misc]
    await store.add_jobs(conn, [JobSpec(identifier="t", payload={"n": n}) for n in range(5, 10)])
    ran: list[int] = []

    async def handler(payload: Any, helpers: JobHelpers) -> None:
        ran.append(payload["n"])

    opts = options(db_url, concurrency=2, local_queue_size=20)
    async with running({"t": handler}, opts) as pool:

        async def others_ran() -> bool:
            return sorted(ran) == list(range(10))

        await wait_until(others_ran, what="the decodable jobs of the batch to run")
        assert await _locked_by(conn, bad) == pool.pool_id
        await store.add_job(conn, "t", {"n": 10})  # the pool still works
        await wait_until(lambda: _no_jobs_but(conn, bad), what="a later job to run")
    assert "could not be decoded" in caplog.text
    assert await _locked_by(conn, bad) is None  # released when the pool ended


async def _locked_by(conn: AsyncConn, job_id: int) -> str | None:
    # not must_get: the test's own connection cannot decode that payload either
    locked_by: str | None = await scalar(
        conn, f"select locked_by from {JOBS} where id = %s", (job_id,)
    )
    return locked_by


async def _no_jobs_but(conn: AsyncConn, job_id: int) -> bool:
    return await scalar(conn, f"select count(*) from {JOBS} where id <> %s", (job_id,)) == 0


async def test_in_auto_mode_a_pool_that_is_not_alone_does_not_fetch_ahead_but_grows_its_batch(
    conn: AsyncConn, store: Store, db_url: str
) -> None:
    # The same quick jobs that a lone pool fetches ahead (the test above), run by a pool that
    # starts while another pool holds a live lease: it fetches only into an empty buffer, in
    # batches that grow from local_queue_size up to the default cap (4 x 5).
    await store.add_jobs(conn, [JobSpec(identifier="t", payload={"n": n}) for n in range(1000)])
    ran = 0

    async def handler(payload: Any, helpers: JobHelpers) -> None:
        nonlocal ran
        ran += 1

    events = Events()
    log = EventLog(events)
    opts = options(db_url, concurrency=4, local_queue_size=5, events=events)
    async with running({"other": handler}, options(db_url)), running({"t": handler}, opts):
        await wait_until(lambda: _no_jobs(conn), within=30, what="every job to run")
    fetches = log.named("worker:getJob:start")
    assert len(fetches) >= 1000 // 20
    assert all(e.data["buffered"] == 0 for e in fetches), "a fetch started with jobs held"
    asked = {e.data["want"] for e in fetches}
    assert max(asked) > 5 and asked <= {5, 10, 20}, asked
    assert ran == 1000


# ------------------------------------------------------------------------------------------
# 11, 12. helpers and sync handlers


async def test_helpers_from_a_handler(
    conn: AsyncConn, store: Store, db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="zodworker")
    seen: dict[str, Any] = {}
    child_done = asyncio.Event()

    async def parent(payload: Any, helpers: JobHelpers) -> None:
        seen["job_id"] = helpers.job.id
        seen["select"] = await helpers.query("select 1")
        seen["params"] = await helpers.query("select %s::int + 1", [41])
        seen["no_rows"] = await helpers.query("set application_name = 'zw-test'")

        async def current_db(c: AsyncConn) -> Any:
            cur = await c.execute("select current_database()")
            row = await cur.fetchone()
            return row[0] if row else None

        seen["db"] = await helpers.with_pg_client(current_db)
        child = await helpers.add_job("child", {"parent": helpers.job.id})
        seen["child_id"] = child.id
        helpers.logger.info("parent says hello")

    async def child(payload: Any, helpers: JobHelpers) -> None:
        seen["child_ran"] = (helpers.job.id, payload)
        child_done.set()

    job = await store.add_job(conn, "parent")
    async with running({"parent": parent, "child": child}, options(db_url, concurrency=2)):
        await wait_set(child_done)
        await wait_until(lambda: _no_jobs(conn), what="both jobs to complete")
    assert seen["job_id"] == job.id
    assert seen["select"] == [(1,)]
    assert seen["params"] == [(42,)]
    assert seen["no_rows"] == []
    assert seen["db"] == conn.info.dbname
    assert seen["child_ran"] == (seen["child_id"], {"parent": job.id})
    records = [r for r in caplog.records if r.getMessage() == "parent says hello"]
    assert len(records) == 1
    assert records[0].job_id == job.id  # type: ignore[attr-defined]
    assert records[0].task == "parent"  # type: ignore[attr-defined]


async def test_sync_handlers_run_in_threads_without_blocking_the_loop(
    conn: AsyncConn, store: Store, db_url: str
) -> None:
    barrier = threading.Barrier(2)
    release = threading.Event()
    lock = threading.Lock()
    threads: list[int] = []
    passed = 0

    def handler(payload: Any, helpers: JobHelpers) -> None:
        nonlocal passed
        with lock:
            threads.append(threading.get_ident())
        barrier.wait(timeout=5)  # both handlers are running at the same time
        with lock:
            passed += 1
        if not release.wait(timeout=5):  # set by the test, on the event loop
            raise RuntimeError("the event loop never got to release us")

    for n in range(2):
        await store.add_job(conn, "sync", {"n": n})
    opts = options(db_url, concurrency=2)
    log = EventLog(opts.events)
    async with running({"sync": handler}, opts):

        async def both_passed() -> bool:
            return passed == 2

        await wait_until(both_passed, what="both sync handlers to meet at the barrier")
        release.set()
        await wait_until(lambda: _no_jobs(conn), what="all jobs to complete")
    assert len(set(threads)) == 2
    assert threading.get_ident() not in threads
    assert not log.named("job:error")


async def test_sync_handlers_honour_a_concurrency_above_40(
    conn: AsyncConn, store: Store, db_url: str
) -> None:
    n = 41
    barrier = threading.Barrier(n)

    def handler(payload: Any, helpers: JobHelpers) -> None:
        barrier.wait(timeout=2)  # all n run at the same time, or the barrier breaks

    await store.add_jobs(conn, [JobSpec(identifier="sync", payload={"i": i}) for i in range(n)])
    opts = options(db_url, concurrency=n)
    log = EventLog(opts.events)
    async with running({"sync": handler}, opts):
        await log.wait_for(
            lambda: len(log.named("job:complete")) == n, within=15, what="all jobs to finish"
        )
    assert [e.error for e in log.named("job:error")] == []


# ------------------------------------------------------------------------------------------
# 13. crash recovery


async def test_jobs_of_a_dead_pool_are_released_and_run_again(
    conn: AsyncConn, store: Store, db_url: str
) -> None:
    job = await store.add_job(conn, "t", {"n": 1}, queue_name="recovered-q")
    await conn.execute(
        f"insert into {POOLS} (pool_id, started_at, last_seen)"
        " values ('dead-pool', now() - interval '2 hours', now() - interval '1 hour')"
    )
    await conn.execute(
        f"update {JOBS} set locked_by = 'dead-pool', locked_at = now(), attempts = 1 where id = %s",
        (job.id,),
    )
    await conn.execute(
        f"update {QUEUES} set locked_by = 'dead-pool', locked_at = now()"
        " where queue_name = 'recovered-q'"
    )
    attempts: list[int] = []
    done = asyncio.Event()

    async def handler(payload: Any, helpers: JobHelpers) -> None:
        attempts.append(helpers.job.attempts)
        done.set()

    opts = options(db_url, heartbeat_interval=0.1, recovery_timeout=0.5)
    log = EventLog(opts.events)
    async with running({"t": handler}, opts):
        await wait_set(done)
        await wait_job_gone(conn, job.id)
    assert attempts == [2]
    recovered = log.named("pool:recovered")
    assert [e.data["job_ids"] for e in recovered] == [[job.id]]
    assert await scalar(conn, f"select count(*) from {POOLS} where pool_id = 'dead-pool'") == 0
    queue_lock = await scalar(
        conn, f"select locked_by from {QUEUES} where queue_name = 'recovered-q'"
    )
    assert queue_lock is None


async def test_a_live_pool_is_not_reaped(conn: AsyncConn, store: Store, db_url: str) -> None:
    runs: Counter[int] = Counter()
    started = asyncio.Event()
    release = asyncio.Event()

    async def long(payload: Any, helpers: JobHelpers) -> None:
        runs[helpers.job.id] += 1
        started.set()
        await release.wait()

    # recovery_timeout 1 s: a loaded test machine may delay a heartbeat a little
    a_opts = options(db_url, pool_id="pool-a", recovery_timeout=1.0)
    b_opts = options(db_url, pool_id="pool-b", recovery_timeout=1.0)
    b_log = EventLog(b_opts.events)
    job = await store.add_job(conn, "long")
    async with running({"long": long}, a_opts):
        await wait_set(started)
        async with running({"long": long}, b_opts):

            async def many_cycles() -> bool:
                # pool-b heartbeats (and reaps) every 0.1 s: 2 s is two recovery timeouts
                return bool(
                    await scalar(
                        conn,
                        f"select coalesce(bool_or(last_seen - started_at >= interval '2 s'),"
                        f" false) from {POOLS} where pool_id = 'pool-b'",
                    )
                )

            await wait_until(many_cycles, what="pool-b to run many reaper cycles")
            held = await must_get(conn, job.id)
            assert held.locked_by == "pool-a"
            assert await scalar(conn, f"select count(*) from {POOLS} where pool_id = 'pool-a'") == 1
            release.set()
            await wait_job_gone(conn, job.id)
    assert runs == {job.id: 1}
    assert not b_log.named("pool:recovered")


async def test_a_busy_pool_whose_handlers_hold_every_connection_is_not_reaped(
    conn: AsyncConn, store: Store, db_url: str
) -> None:
    runs: Counter[int] = Counter()
    started = asyncio.Event()
    release = asyncio.Event()

    async def long(payload: Any, helpers: JobHelpers) -> None:
        runs[helpers.job.id] += 1
        started.set()

        async def hold(c: AsyncConn) -> None:  # e.g. a long report query
            await release.wait()

        await helpers.with_pg_client(hold)

    a_opts = options(db_url, pool_id="pool-a", max_pool_size=1, recovery_timeout=1.0)
    b_opts = options(db_url, pool_id="pool-b", recovery_timeout=1.0)
    job = await store.add_job(conn, "long")
    async with running({"long": long}, a_opts):
        await wait_set(started)
        async with running({"long": long}, b_opts):

            async def many_cycles() -> bool:
                return bool(
                    await scalar(
                        conn,
                        "select coalesce(bool_or(last_seen - started_at >= interval '2 s'),"
                        f" false) from {POOLS} where pool_id = 'pool-b'",
                    )
                )

            try:
                await wait_until(many_cycles, what="pool-b to run many reaper cycles")
            finally:
                release.set()  # let both pools stop promptly, whatever happened
    assert runs == {job.id: 1}


# ------------------------------------------------------------------------------------------
# 14, 15. events and worker:migrate


async def test_events_of_a_pool_and_its_jobs(conn: AsyncConn, store: Store, db_url: str) -> None:
    async def ok(payload: Any, helpers: JobHelpers) -> None:
        pass

    async def bad(payload: Any, helpers: JobHelpers) -> None:
        raise ValueError("boom")

    good = await store.add_job(conn, "ok")
    doomed = await store.add_job(conn, "bad", max_attempts=1)
    opts = options(db_url, migrate=True)
    log = EventLog(opts.events)
    async with running({"ok": ok, "bad": bad}, opts):
        await log.wait_for(lambda: len(log.named("job:complete")) == 2, what="two jobs")
        await log.wait_for(lambda: log.named("pool:listen:success"), what="LISTEN")
    names = log.names()
    assert names[0] == "pool:create"
    assert names[-1] == "stop"
    for name in ("worker:create", "pool:gracefulShutdown", "worker:stop", "pool:release"):
        assert name in names

    def of(name: str, job_id: int) -> list[Event]:
        return [e for e in log.named(name) if e.job is not None and e.job.id == job_id]

    assert len(of("job:start", good.id)) == 1
    (success,) = of("job:success", good.id)
    assert success.duration is not None and success.duration >= 0
    (complete,) = of("job:complete", good.id)
    assert complete.error is None and complete.duration is not None
    assert complete.job is not None and complete.job.attempts == 1
    assert not of("job:error", good.id)

    assert len(of("job:start", doomed.id)) == 1
    (error,) = of("job:error", doomed.id)
    assert isinstance(error.error, ValueError) and error.duration is not None
    (failed,) = of("job:failed", doomed.id)
    assert isinstance(failed.error, ValueError)
    (complete,) = of("job:complete", doomed.id)
    assert isinstance(complete.error, ValueError)
    assert not of("job:success", doomed.id)
    assert names.index("job:start") > names.index("pool:create")


async def test_a_breaking_migration_notification_stops_the_pool_with_exit_code_57(
    conn: AsyncConn, store: Store, db_url: str
) -> None:
    done = asyncio.Event()

    async def handler(payload: Any, helpers: JobHelpers) -> None:
        done.set()

    opts = options(db_url, poll_interval=30)
    log = EventLog(opts.events)
    pool = await run({"t": handler}, opts)
    try:
        await log.wait_for(log.idle_and_listening, what="the pool to listen and go idle")
        # a non-breaking migration is ignored: the job added after it still runs
        await conn.execute(
            """select pg_notify('worker:migrate', '{"migrationNumber": 98, "breaking": false}')"""
        )
        await store.add_job(conn, "t")
        await wait_set(done)
        assert pool.exit_code == 0
        assert not log.named("pool:gracefulShutdown")

        await conn.execute(
            """select pg_notify('worker:migrate', '{"migrationNumber": 99, "breaking": true}')"""
        )
        with anyio.fail_after(5):
            await pool.wait()
    finally:
        await pool.stop()
    assert pool.exit_code == 57
    assert log.names()[-1] == "stop"


# ------------------------------------------------------------------------------------------
# 16. replacing the task list


async def test_a_fetched_job_whose_task_was_removed_fails_as_unsupported(
    conn: AsyncConn, store: Store, db_url: str
) -> None:
    jobs = {name: await store.add_job(conn, name) for name in ("a", "b")}
    started: list[str] = []
    first_started = asyncio.Event()
    release = asyncio.Event()

    async def handler(payload: Any, helpers: JobHelpers) -> None:
        started.append(helpers.job.task_identifier)
        first_started.set()
        await release.wait()

    opts = options(db_url, concurrency=1, local_queue_size=10)
    async with running({"a": handler, "b": handler}, opts) as pool:
        await wait_set(first_started)
        # both were fetched in one batch: one runs, the other is held locally
        (running_name,) = started
        other = jobs["b" if running_name == "a" else "a"]
        held = await must_get(conn, other.id)
        assert held.locked_by == pool.pool_id
        pool.replace_tasks({running_name: handler})
        release.set()
        failed = await wait_job_failed(conn, other.id)
        await wait_job_gone(conn, jobs[running_name].id)
    assert failed.last_error == f"LookupError: unsupported task {other.task_identifier!r}"
    assert failed.attempts == 1
    assert started == [running_name]


async def test_replace_tasks_picks_up_a_new_identifier(
    conn: AsyncConn, store: Store, db_url: str
) -> None:
    done = asyncio.Event()

    async def a(payload: Any, helpers: JobHelpers) -> None:
        pass

    async def c(payload: Any, helpers: JobHelpers) -> None:
        done.set()

    opts = options(db_url)
    log = EventLog(opts.events)
    async with running({"a": a}, opts) as pool:
        job = await store.add_job(conn, "c")
        mark = len(log.events)
        await log.wait_for(
            lambda: len(log.named("worker:getJob:empty", since=mark)) >= 2,
            what="two fetches after the add",
        )
        waiting = await must_get(conn, job.id)
        assert (waiting.attempts, waiting.locked_by) == (0, None)
        pool.replace_tasks({"a": a, "c": c})
        await wait_set(done)
        await wait_job_gone(conn, job.id)


async def test_task_registration_racing_a_first_add_job_still_runs_the_job(db_url: str) -> None:
    """add_job creates a brand-new task row in an open transaction while a pool starts: the
    pool's registration waits on that row, skips it on conflict and must ask again."""
    ran = asyncio.Event()

    async def brand_new(payload: Any, helpers: JobHelpers) -> None:
        ran.set()

    async with (
        await psycopg.AsyncConnection.connect(db_url) as adder,
        await psycopg.AsyncConnection.connect(db_url, autocommit=True) as observer,
    ):
        await Store().add_job(adder, "brandNew", {"n": 1})  # not committed yet
        pool = WorkerPool(  # a second task: a partly registered list must not look complete
            {"brandNew": brand_new, "alsoHere": brand_new},
            WorkerOptions(connection=db_url, handle_signals=False, poll_interval=0.05),
        )
        starting = asyncio.create_task(pool.start())

        async def someone_waits_on_a_lock() -> bool:
            cur = await observer.execute(
                "select count(*) from pg_stat_activity"
                " where datname = current_database() and wait_event_type = 'Lock'"
            )
            row = await cur.fetchone()
            return bool(row and row[0])

        await wait_until(someone_waits_on_a_lock, what="registration to wait on the new task row")
        await adder.commit()
        await starting
        try:
            await asyncio.wait_for(ran.wait(), 10)
        finally:
            await pool.stop()
