"""The admin API against real PostgreSQL, on both faces (``Admin`` and ``SyncAdmin``):
listing with filters and keyset pages, bounded counts, bulk retry/delete/reschedule by
filter, stats, queues, workers, pausing queues and cancelling jobs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from tests.support.dbtools import lock_job, wait_until
from tests.support.pools import pool_options
from tests.support.stores import FLAVOURS, Flavour, SyncStoreFacade
from zodworker import Events, JobHelpers, JobSpec, Store, WorkerOptions, WorkerPool
from zodworker.admin import Admin, JobFilter, SyncAdmin
from zodworker.db.cron import CronStore
from zodworker.errors import JobSpecError

pytestmark = pytest.mark.anyio

Q = "graphile_worker"


@pytest.fixture(params=sorted(FLAVOURS))
def flavour(request: pytest.FixtureRequest) -> Flavour:
    return FLAVOURS[request.param]


@pytest.fixture
def admin(flavour: Flavour) -> Any:
    return Admin() if flavour.name == "async" else SyncStoreFacade(SyncAdmin())  # type: ignore[arg-type]


@pytest.fixture
async def conn(flavour: Flavour, db_url: str) -> AsyncIterator[Any]:
    async with flavour.connect(db_url, autocommit=True) as c:
        yield c


async def seed(db_url: str) -> dict[str, list[int]]:
    """A job in every state: 3 ready, 2 scheduled, 1 running, 1 retrying, 2 failed."""
    later = datetime.now(UTC) + timedelta(hours=1)
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as c:
        store = Store()
        ready = [await store.add_job(c, "mail", {"n": n}, queue_name="emails") for n in range(3)]
        scheduled = [await store.add_job(c, "report", {"n": n}, run_at=later) for n in range(2)]
        running = await store.add_job(c, "mail", {"n": 9}, job_key="k9", flags=["slow"])
        await lock_job(c, running.id)
        retrying = await store.add_job(c, "report", {"n": 5})
        failed = [await store.add_job(c, "mail", {"n": n}, queue_name="emails") for n in (6, 7)]
        await c.execute(
            f"update {Q}._private_jobs set attempts = 1, last_error = 'x' where id = %s",
            (retrying.id,),
        )
        await c.execute(
            f"update {Q}._private_jobs set attempts = max_attempts, last_error = 'boom'"
            " where id = any(%s)",
            ([j.id for j in failed],),
        )
    return {
        "ready": [j.id for j in ready],
        "scheduled": [j.id for j in scheduled],
        "running": [running.id],
        "retrying": [retrying.id],
        "failed": [j.id for j in failed],
    }


async def test_every_filter_selects_the_right_jobs(admin: Any, conn: Any, db_url: str) -> None:
    ids = await seed(db_url)
    for state, expected in ids.items():
        page = await admin.list_jobs(conn, JobFilter(state=state))
        assert sorted(v.job.id for v in page.jobs) == sorted(expected), state
        assert {v.state for v in page.jobs} == {state}
    mail = await admin.list_jobs(conn, JobFilter(task="mail"))
    assert len(mail.jobs) == 6
    emails = await admin.list_jobs(conn, JobFilter(queue="emails", state="failed"))
    assert sorted(v.job.id for v in emails.jobs) == sorted(ids["failed"])
    assert [v.job.id for v in (await admin.list_jobs(conn, JobFilter(key="k9"))).jobs] == ids[
        "running"
    ]
    assert [v.job.id for v in (await admin.list_jobs(conn, JobFilter(flag="slow"))).jobs] == ids[
        "running"
    ]
    assert (await admin.get_job(conn, ids["failed"][0])).job.last_error == "boom"
    assert await admin.get_job(conn, 999_999) is None


async def test_keyset_pages_cover_every_job_once_in_both_orders(
    admin: Any, conn: Any, db_url: str
) -> None:
    ids = await seed(db_url)
    everything = sorted(i for group in ids.values() for i in group)
    for newest in (True, False):
        seen: list[int] = []
        after = None
        while True:
            page = await admin.list_jobs(conn, limit=2, after=after, newest=newest)
            seen += [v.job.id for v in page.jobs]
            if page.after is None:
                break
            after = page.after
        assert seen == (sorted(everything, reverse=True) if newest else everything)


async def test_counts_are_exact_below_the_bound_and_say_so_above(
    admin: Any, conn: Any, db_url: str
) -> None:
    await seed(db_url)
    exact = await admin.count_jobs(conn)
    assert (exact.value, exact.exact) == (9, True)
    bounded = await admin.count_jobs(conn, bound=4)
    assert (bounded.value, bounded.exact) == (5, False) and str(bounded) == "~5"


async def test_bulk_operations_act_on_the_filter_and_skip_held_jobs(
    admin: Any, conn: Any, db_url: str
) -> None:
    ids = await seed(db_url)
    retried = await admin.retry_jobs(conn, JobFilter(task="mail"))
    # every mail job but the running one (a live worker holds it)
    assert sorted(retried) == sorted(ids["ready"] + ids["failed"])
    again = await admin.list_jobs(conn, JobFilter(ids=ids["failed"]))
    assert {(v.state, v.job.attempts) for v in again.jobs} == {("ready", 0)}
    when = datetime(2031, 1, 1, tzinfo=UTC)
    moved = await admin.reschedule_jobs(conn, JobFilter(state="retrying"), when)
    assert moved == ids["retrying"]
    assert (await admin.get_job(conn, moved[0])).job.run_at == when
    deleted = await admin.delete_jobs(conn, JobFilter(task="report"))
    assert sorted(deleted) == sorted(ids["scheduled"] + ids["retrying"])
    assert (await admin.count_jobs(conn)).value == 6


async def test_stats_exact_and_estimated_agree_on_a_small_table(
    admin: Any, conn: Any, db_url: str
) -> None:
    await seed(db_url)
    exact = await admin.stats(conn)
    assert exact.exact
    counts = {(r.task, r.queue, r.state): r.count.value for r in exact.rows}
    assert counts == {
        ("mail", "emails", "ready"): 3,
        ("mail", "emails", "failed"): 2,
        ("mail", None, "running"): 1,
        ("report", None, "scheduled"): 2,
        ("report", None, "retrying"): 1,
    }
    assert set(exact.oldest_ready) == {"emails", None}
    await conn.execute(f"analyze {Q}._private_jobs")
    estimated = await admin.stats(conn, bound=1)  # the sampled path, a whole small table
    assert not estimated.exact
    assert {(r.task, r.queue, r.state): r.count.value for r in estimated.rows} == counts


async def test_queues_and_workers_are_listed(admin: Any, conn: Any, db_url: str) -> None:
    await seed(db_url)
    [emails] = await admin.list_queues(conn)
    assert (emails.name, emails.depth.value, emails.paused) == ("emails", 5, False)
    assert await admin.pause_queue(conn, "emails")
    assert not await admin.pause_queue(conn, "emails")  # already
    [paused] = await admin.list_queues(conn)
    assert paused.paused and paused.locked_by == "zodworker:paused"
    assert await admin.resume_queue(conn, "emails")
    assert not await admin.resume_queue(conn, "emails")
    pool = WorkerPool({"idle": _noop}, _options(db_url, "lister"))  # no job of its task
    async with pool:
        [worker] = await admin.list_workers(conn)
        assert worker.pool_id == "lister" and worker.running == 0
        assert worker.lease_expires_at > datetime.now(UTC)
    await admin.unlock_workers(conn, ["worker-1"])
    assert (await admin.count_jobs(conn, JobFilter(state="running"))).value == 0


async def test_a_paused_queue_holds_off_workers_across_restarts_and_the_4_hour_sweep(
    db_url: str,
) -> None:
    admin = Admin()
    ran: list[int] = []

    async def record(payload: Any, helpers: JobHelpers) -> None:
        ran.append(payload["n"])

    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as c:
        assert await admin.pause_queue(c, "held")  # before the queue has any job
        await Store().add_jobs(
            c,
            [JobSpec(identifier="rec", queue_name="held", payload={"n": n}) for n in range(3)]
            + [JobSpec(identifier="rec", payload={"n": 100})],
        )
        for name in ("first", "second"):  # a restart: nothing of the pause is in the pool
            looked = _empty_fetches()
            async with WorkerPool({"rec": record}, _options(db_url, name, events=looked[0])):
                await wait_until(lambda: _true(100 in ran), what="the unqueued job")
                await _fetched_nothing_after(looked)  # the held jobs were there to take
        assert ran == [100]
        # upstream's sweep, a day later: locks older than 4 hours are freed; the pause is not
        await c.execute(
            f"update {Q}._private_job_queues set locked_at = null, locked_by = null"
            " where locked_at < now() + interval '1 day' - interval '4 hours'"
        )
        # someone cleared the lock by hand: a pool pauses the queue again
        await c.execute(f"select {Q}.force_unlock_workers(array['zodworker:paused'])")
        looked = _empty_fetches()
        async with WorkerPool({"rec": record}, _options(db_url, "third", events=looked[0])):
            await _fetched_nothing_after(looked)
            assert ran == [100]
            assert await admin.resume_queue(c, "held")
            await wait_until(lambda: _true(sorted(ran) == [0, 1, 2, 100]), what="the queue")


async def test_cancelling_a_running_job_aborts_it_within_a_second_and_it_never_retries(
    db_url: str,
) -> None:
    admin = Admin()
    started = asyncio.Event()
    aborted: list[float] = []

    async def long(payload: Any, helpers: JobHelpers) -> None:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            aborted.append(time.monotonic())
            raise

    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as c:
        job = await Store().add_job(c, "long", {}, max_attempts=5)
        waiting = await Store().add_job(c, "other", {})
        async with WorkerPool({"long": long}, _options(db_url, "runner")):
            await asyncio.wait_for(started.wait(), 10)
            asked = time.monotonic()
            cancelled = await admin.cancel_job(c, job.id)
            assert cancelled is not None and cancelled.running_on == "runner"
            await wait_until(lambda: _true(bool(aborted)), what="the handler to be aborted")
            took = aborted[0] - asked
            await wait_until(
                lambda: _locked_is_none(c, job.id), what="the cancelled job's failure to be written"
            )
        view = await admin.get_job(c, job.id)
        assert view is not None and view.state == "failed"
        assert "cancelled" in (view.job.last_error or "")
        print(f"\ncancel -> handler aborted in {took * 1000:.0f} ms")
        assert took < 1.0
        not_running = await admin.cancel_job(c, waiting.id)
        assert not_running is not None and not_running.running_on is None
        assert (await admin.get_job(c, waiting.id)).state == "failed"  # type: ignore[union-attr]
        assert await admin.cancel_job(c, 999_999) is None


async def test_cancellation_is_polled_when_no_notification_arrives(db_url: str) -> None:
    started = asyncio.Event()
    aborted = asyncio.Event()

    async def long(payload: Any, helpers: JobHelpers) -> None:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            aborted.set()
            raise

    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as c:
        job = await Store().add_job(c, "long", {})
        opts = _options(db_url, "deaf", poll_only=True, poll_interval=0.05)
        async with WorkerPool({"long": long}, opts):
            await asyncio.wait_for(started.wait(), 10)
            asked = time.monotonic()
            await Admin().cancel_job(c, job.id)
            await asyncio.wait_for(aborted.wait(), 5)
            assert time.monotonic() - asked < 2.5  # the poll runs every second


def _empty_fetches() -> tuple[Events, list[asyncio.Event]]:
    """Events whose fetches that found nothing set the latest asyncio.Event in the list."""
    events, seen = Events(), [asyncio.Event()]
    events.on("worker:getJob:empty", lambda _event: seen[-1].set())
    return events, seen


async def _fetched_nothing_after(looked: tuple[Events, list[asyncio.Event]]) -> None:
    """Wait for the next fetch that finds nothing (every job it could take is held)."""
    fresh = asyncio.Event()
    looked[1].append(fresh)
    await asyncio.wait_for(fresh.wait(), 10)


def _options(db_url: str, pool_id: str, **overrides: Any) -> WorkerOptions:
    timing = {"poll_interval": 0.1, "heartbeat_interval": 0.2, "recovery_timeout": 1.0}
    return pool_options(db_url, **{"pool_id": pool_id, **timing, **overrides})


async def _noop(payload: Any, helpers: JobHelpers) -> None:
    return None


async def _locked_is_none(conn: Any, job_id: int) -> bool:
    cur = await conn.execute(f"select locked_by from {Q}._private_jobs where id = %s", (job_id,))
    row = await cur.fetchone()
    return row is not None and row[0] is None


async def _true(value: bool) -> bool:
    return value


async def test_text_filter_finds_payload_text_as_plain_text(
    admin: Any, conn: Any, db_url: str
) -> None:
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as c:
        store = Store()
        hit = await store.add_job(c, "mail", {"to": "Ada@Example.org", "n": 1})
        await store.add_job(c, "mail", {"to": "bob@example.org", "n": 2})
        odd = await store.add_job(c, "mail", {"note": "100%_sure"})
    found = await admin.list_jobs(conn, JobFilter(text="ada@example"))  # any case
    assert [v.job.id for v in found.jobs] == [hit.id]
    # % and _ are text, not wildcards
    assert [v.job.id for v in (await admin.list_jobs(conn, JobFilter(text="%_s"))).jobs] == [odd.id]
    assert (await admin.count_jobs(conn, JobFilter(text="example.org"))).value == 2
    with pytest.raises(JobSpecError) as caught:
        await admin.list_jobs(conn, JobFilter(text=""))
    assert caught.value.field == "text"


async def test_bulk_cancel_fails_waiting_jobs_and_asks_pools_to_abort_running_ones(
    admin: Any, conn: Any, db_url: str
) -> None:
    ids = await seed(db_url)
    cancelled = await admin.cancel_jobs(conn, JobFilter(task="mail"))
    # failed-for-good jobs are left alone; the running one is cancelled too (its pool aborts)
    assert sorted(cancelled) == sorted(ids["ready"] + ids["running"])
    ready = await admin.list_jobs(conn, JobFilter(ids=ids["ready"]))
    assert {(v.state, v.job.last_error) for v in ready.jobs} == {("failed", "cancelled")}
    cur = await conn.execute(f"select job_id from {Q}._zodworker_cancellations")
    assert [row[0] for row in await cur.fetchall()] == ids["running"]
    assert (await admin.get_job(conn, ids["failed"][0])).job.last_error == "boom"


async def test_known_crontabs_deleted_rows_and_pool_counts(
    admin: Any, conn: Any, db_url: str
) -> None:
    assert await admin.known_crontabs(conn) == []
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as c:
        await CronStore(c, Q).register(["nightly", "hourly"], datetime.now(UTC))
        before = await admin.deleted_total(conn)
        done = [await Store().add_job(c, "work", {"n": n}) for n in range(3)]
        failing = await Store().add_job(c, "broken", {})
    assert [k.identifier for k in await admin.known_crontabs(conn)] == ["hourly", "nightly"]
    assert all(k.last_execution is None for k in await admin.known_crontabs(conn))

    async def broken(payload: Any, helpers: JobHelpers) -> None:
        raise RuntimeError("no")

    pool = WorkerPool({"work": _noop, "broken": broken}, _options(db_url, "counter"))
    async with pool:

        async def counted() -> bool:
            workers = await admin.list_workers(conn)
            return bool(workers) and (workers[0].completed, workers[0].failed) == (3, 1)

        await wait_until(counted, within=10, what="the pool's heartbeat to carry its counts")
    assert len(done) == 3
    assert (await admin.get_job(conn, failing.id)).state == "retrying"  # the failed attempt

    async def deleted() -> bool:  # the statistics system counts within about a second
        now = await admin.deleted_total(conn)
        return now.total - before.total >= 3 and now.at > before.at

    await wait_until(deleted, within=10, what="the deletions to be counted")
