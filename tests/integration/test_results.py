"""Typed results against a real PostgreSQL: enqueue -> worker -> ``await handle.result()``,
retries, permanent failures, cancellations, timeouts, wrong return values, tasks that keep
no results, the synchronous twin, and many awaits sharing one LISTEN connection."""

from __future__ import annotations

import asyncio
import html
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import msgspec
import psycopg
import pytest
from pydantic import BaseModel

from tests.support.dbtools import wait_until
from zodworker import (
    JobFailed,
    JobHelpers,
    JobSpecError,
    LifecycleError,
    PermanentFailure,
    ResultTimeout,
    ResultUnavailable,
    TaskCatalog,
    ZodWorker,
    task,
)
from zodworker.admin import Admin
from zodworker.db.connect import Database
from zodworker.db.worker_store import WorkerStore
from zodworker.web import create_app

pytestmark = pytest.mark.anyio

AsyncConn = psycopg.AsyncConnection[Any]


class Resize(BaseModel):
    url: str
    fail_times: int = 0
    wide: bool = False


class Resized(BaseModel):
    url: str
    width: int


class Sized(msgspec.Struct):
    n: int


class Ratio(BaseModel):
    value: float
    extra: dict[str, Any] = {}


async def resize(payload: Resize, helpers: JobHelpers) -> Any:
    if helpers.job.attempts <= payload.fail_times:
        raise RuntimeError(f"flaky storage on attempt {helpers.job.attempts}")
    if payload.wide:
        return {"url": payload.url, "width": "very wide"}  # not what Resized accepts
    return Resized(url=payload.url, width=len(payload.url))


async def refuse(payload: Resize, helpers: JobHelpers) -> None:
    raise PermanentFailure(f"cannot read {payload.url}")


async def linger(payload: Resize, helpers: JobHelpers) -> None:
    await helpers.abort_signal.wait()


async def ratio(payload: Resize, helpers: JobHelpers) -> Ratio:
    if payload.wide:
        return Ratio(value=1.0, extra={"spread": [0.5, float("inf")]})
    return Ratio(value=float("nan"))


def count(payload: Sized, helpers: JobHelpers) -> Sized:
    return Sized(n=payload.n * 2)


async def plain(payload: Resize, helpers: JobHelpers) -> str:
    return "not kept"


class Media(TaskCatalog):
    resize = task(Resize, resize, output=Resized, max_attempts=3)
    refuse = task(Resize, refuse, output=Resized)
    linger = task(Resize, linger, output=Resized)
    count = task(Sized, count, output=Sized)
    ratio = task(Resize, ratio, output=Ratio)
    plain = task(Resize, plain)


@pytest.fixture
async def client(db_url: str) -> AsyncIterator[ZodWorker]:
    async with ZodWorker(
        catalog=Media(), database_url=db_url, concurrency=4, handle_signals=False, log_jobs=False
    ) as running:
        yield running


async def _hurry(conn: AsyncConn) -> None:
    """Make retries due at once (the backoff would take seconds). The statement is
    shielded: a cancel arriving mid-statement would make psycopg close ``conn``, which
    the test reads afterwards; the cancel lands on the sleep instead."""
    while True:
        with anyio.CancelScope(shield=True):
            await conn.execute(
                "update graphile_worker._private_jobs set run_at = now()"
                " where attempts > 0 and locked_at is null and run_at > now()"
            )
        await anyio.sleep(0.05)


async def test_a_typed_output_comes_back_to_the_handle_and_by_job_id(client: ZodWorker) -> None:
    handle = await client.enqueue(Media.resize, Resize(url="s3://a.png"))
    resized = await handle.result(timeout=10)
    assert resized == Resized(url="s3://a.png", width=10)
    again = await client.result(handle.id, timeout=10)
    assert isinstance(again, Resized) and again == resized
    counted = await client.enqueue(Media.count, Sized(n=21))  # msgspec output types too
    assert await counted.result(timeout=10) == Sized(n=42)


async def test_a_job_that_retries_twice_then_succeeds_returns_its_output(
    client: ZodWorker, conn: AsyncConn
) -> None:
    handle = await client.enqueue(Media.resize, Resize(url="s3://flaky.png", fail_times=2))
    async with anyio.create_task_group() as group:
        group.start_soon(_hurry, conn)
        resized = await handle.result(timeout=20)
        group.cancel_scope.cancel()
    assert resized.width == len("s3://flaky.png")
    cur = await conn.execute(
        "select outcome, attempts, last_error from graphile_worker._zodworker_job_history"
        " where job_id = %s",
        (handle.id,),
    )
    assert await cur.fetchone() == ("success", 3, None)


async def test_a_permanent_failure_raises_job_failed_with_the_last_error(
    client: ZodWorker, conn: AsyncConn
) -> None:
    handle = await client.enqueue(Media.refuse, Resize(url="s3://gone.png"))
    with pytest.raises(JobFailed) as failed:
        await handle.result(timeout=10)
    assert failed.value.outcome == "failed"
    assert failed.value.attempts == 1
    assert "cannot read s3://gone.png" in (failed.value.last_error or "")
    # used up attempts: retries exhausted the same way
    exhausted = await client.enqueue(Media.resize, Resize(url="s3://x", fail_times=9))
    async with anyio.create_task_group() as group:
        group.start_soon(_hurry, conn)
        with pytest.raises(JobFailed) as retried:
            await exhausted.result(timeout=20)
        group.cancel_scope.cancel()
    assert retried.value.attempts == 3
    assert "flaky storage on attempt 3" in (retried.value.last_error or "")


async def test_a_wrong_return_value_fails_the_job_naming_the_field(
    client: ZodWorker, conn: AsyncConn
) -> None:
    handle = await client.enqueue(Media.resize, Resize(url="s3://w", wide=True))
    with pytest.raises(JobFailed) as failed:
        await handle.result(timeout=10)
    error = failed.value.last_error or ""
    assert "OutputValidationError" in error and "output.width" in error, error
    assert failed.value.attempts == 1  # failed for good: no retry repeats its effects
    cur = await conn.execute(
        "select attempts, max_attempts, last_error from graphile_worker.jobs where id = %s",
        (handle.id,),
    )
    attempts, max_attempts, last_error = await cur.fetchone() or (None, None, None)
    assert attempts == max_attempts and "output.width" in last_error


@pytest.mark.parametrize(
    ("wide", "field"), [(False, "output.value"), (True, "output.extra.spread[1]")]
)
async def test_an_output_json_cannot_hold_fails_the_job_naming_the_field(
    client: ZodWorker, wide: bool, field: str
) -> None:
    # NaN or infinity in a float field, or inside an Any field (where pydantic's JSON dump
    # would store null): refused like a wrong value, not stored as something else
    handle = await client.enqueue(Media.ratio, Resize(url="s3://r", wide=wide))
    with pytest.raises(JobFailed) as failed:
        await handle.result(timeout=10)
    error = failed.value.last_error or ""
    assert "OutputValidationError" in error and field in error and "JSON" in error, error
    assert failed.value.attempts == 1


async def test_a_timeout_raises_and_leaves_the_job_alone(db_url: str, conn: AsyncConn) -> None:
    async with ZodWorker(catalog=Media(), database_url=db_url, producer_only=True) as producer:
        handle = await producer.enqueue(Media.resize, Resize(url="s3://later"))
        with pytest.raises(ResultTimeout):
            await handle.result(timeout=0.3)
        cur = await conn.execute(
            "select attempts, locked_by, last_error from graphile_worker.jobs where id = %s",
            (handle.id,),
        )
        assert await cur.fetchone() == (0, None, None)
        # and waiting again works once a worker runs it
        async with ZodWorker(
            catalog=Media(), database_url=db_url, handle_signals=False, log_jobs=False
        ):
            assert (await handle.result(timeout=10)).url == "s3://later"


async def test_a_job_cancelled_while_it_runs_raises_job_failed_cancelled(
    client: ZodWorker, conn: AsyncConn
) -> None:
    handle = await client.enqueue(Media.linger, Resize(url="s3://long"))
    waiting = asyncio.ensure_future(handle.result(timeout=15))

    async def running() -> bool:
        cur = await conn.execute(
            "select locked_by is not null from graphile_worker.jobs where id = %s", (handle.id,)
        )
        return (await cur.fetchone() or (False,))[0]

    await wait_until(running, what="the job running")
    await Admin().cancel_job(conn, handle.id)
    with pytest.raises(JobFailed) as failed:
        await waiting
    assert failed.value.outcome == "cancelled"
    # a queued job cancelled by an operator settles the same way
    queued = await client.enqueue(Media.resize, Resize(url="s3://q"), run_at=_later())
    await Admin().cancel_job(conn, queued.id)
    with pytest.raises(JobFailed) as cancelled:
        await queued.result(timeout=10)
    assert cancelled.value.outcome == "cancelled"


def _later() -> Any:
    from datetime import UTC, datetime, timedelta

    return datetime.now(UTC) + timedelta(hours=1)


async def test_a_task_that_keeps_no_results_says_so(client: ZodWorker, conn: AsyncConn) -> None:
    handle = await client.enqueue(Media.plain, Resize(url="s3://p"))
    with pytest.raises(ResultUnavailable, match="keeps no results"):
        await handle.result(timeout=10)
    cur = await conn.execute("select count(*) from graphile_worker._zodworker_job_history")
    assert await cur.fetchone() == (0,)


async def test_the_sync_twin_waits_in_a_thread(client: ZodWorker, db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as sync_conn:
        handle = client.enqueue_sync(Media.resize, Resize(url="s3://sync"), tx=sync_conn)
    resized = await anyio.to_thread.run_sync(lambda: handle.result_sync(timeout=10))
    assert resized == Resized(url="s3://sync", width=9)
    with pytest.raises(ResultTimeout):
        never = await client.enqueue(Media.resize, Resize(url="s3://n"), run_at=_later())
        await anyio.to_thread.run_sync(lambda: client.result_sync(never.id, timeout=0.2))


async def _backends(conn: AsyncConn, db_url: str) -> int:
    cur = await conn.execute(
        "select count(*) from pg_stat_activity where datname = current_database()"
    )
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def test_ten_thousand_awaited_jobs_share_one_listen_connection(
    db_url: str, conn: AsyncConn
) -> None:
    async with ZodWorker(
        catalog=Media(), database_url=db_url, producer_only=True, max_pool_size=4
    ) as producer:
        handles = await producer.enqueue_many([(Media.count, Sized(n=i)) for i in range(10_000)])
        before = await _backends(conn, db_url)
        waits = [asyncio.ensure_future(h.result(timeout=120)) for h in handles]
        await wait_until(
            lambda: _awaited(producer, 10_000), what="every wait registered", within=30
        )
        during = await _backends(conn, db_url)
        assert during - before <= 1 + 4, (before, during)  # one LISTEN, the pool at most
        async with ZodWorker(
            catalog=Media(),
            database_url=db_url,
            concurrency=10,
            handle_signals=False,
            log_jobs=False,
        ):
            results = await asyncio.gather(*waits)
    assert [r.n for r in results] == [2 * i for i in range(10_000)]


async def _awaited(client: ZodWorker, n: int) -> bool:
    waiter = client._waiter
    return waiter is not None and waiter.waiting >= n


async def _finished(conn: AsyncConn, n: int) -> bool:
    cur = await conn.execute("select count(*) from graphile_worker._zodworker_job_history")
    row = await cur.fetchone()
    return row is not None and row[0] >= n


async def test_history_is_listed_by_the_admin_api_the_cli_and_the_dashboard(
    client: ZodWorker, conn: AsyncConn, db_url: str
) -> None:
    ok = await client.enqueue(Media.resize, Resize(url="s3://ok"))
    bad = await client.enqueue(Media.refuse, Resize(url="s3://bad"))
    unkept = await client.enqueue(Media.plain, Resize(url="s3://plain"))
    await wait_until(lambda: _finished(conn, 2), what="two history rows")
    await wait_until(lambda: _gone(conn, unkept.id), what="the plain job done")
    admin = Admin()
    rows = await admin.history(conn)
    assert [(r.job_id, r.task, r.outcome) for r in rows] == [
        (bad.id, "refuse", "failed"),
        (ok.id, "resize", "success"),
    ]
    done = rows[1]
    assert done.output == {"url": "s3://ok", "width": 7}
    assert done.payload["url"] == "s3://ok" and done.attempts == 1 and done.last_error is None
    assert done.created_at <= done.started_at <= done.finished_at  # type: ignore[operator]
    assert done.duration is not None and done.duration >= 0
    assert "cannot read s3://bad" in (rows[0].last_error or "")
    assert [r.job_id for r in await admin.history(conn, outcome="failed")] == [bad.id]
    assert [r.job_id for r in await admin.history(conn, task="resize")] == [ok.id]
    assert [r.job_id for r in await admin.history(conn, before=bad.id)] == [ok.id]
    with pytest.raises(JobSpecError, match="outcome"):
        await admin.history(conn, outcome="lost")

    listed = await anyio.to_thread.run_sync(_cli_history, db_url)
    assert [(j["job_id"], j["outcome"]) for j in listed["jobs"]] == [
        (bad.id, "failed"),
        (ok.id, "success"),
    ]

    app = create_app(db_url)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://dash") as web:
        page = await web.get("/history")
        assert page.status_code == 200
        assert f'data-job="{ok.id}"' in page.text and f'data-job="{bad.id}"' in page.text
        failed_only = await web.get("/history?outcome=failed")
        assert f'data-job="{ok.id}"' not in failed_only.text
        gone = await web.get(f"/jobs/{ok.id}")  # deleted from jobs: its history row shows
        assert gone.status_code == 200 and '"width": 7' in html.unescape(gone.text)
        assert (await web.get(f"/jobs/{unkept.id}")).status_code == 404
    await app.state.dashboard.close()


def _cli_history(db_url: str) -> Any:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    found = subprocess.run(
        [sys.executable, "-m", "zodworker", "jobs", "history", "-c", db_url, "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert found.returncode == 0, found.stderr
    return json.loads(found.stdout)


async def _gone(conn: AsyncConn, job_id: int) -> bool:
    cur = await conn.execute("select 1 from graphile_worker.jobs where id = %s", (job_id,))
    return await cur.fetchone() is None


async def test_history_is_pruned_by_age_and_by_count_in_batches(
    db_url: str, conn: AsyncConn
) -> None:
    await conn.execute(
        "insert into graphile_worker._zodworker_job_history (job_id, task_identifier,"
        " outcome, attempts, max_attempts, created_at, finished_at)"
        " select n, 't', 'success', 1, 25, now(), now() - make_interval(days => 10, secs => n)"
        " from generate_series(1, 2500) as n"
        " union all select n, 't', 'success', 1, 25, now(), now() - make_interval(secs => n)"
        " from generate_series(2501, 2510) as n"
    )
    database = Database(db_url)
    await database.open()
    try:
        store = WorkerStore(database, "pruner")
        assert await store.prune_history(7 * 86_400, None, batch=1000) == 2500
        cur = await conn.execute(
            "select min(job_id), count(*) from graphile_worker._zodworker_job_history"
        )
        assert await cur.fetchone() == (2501, 10)  # the recent ones stay
        assert await store.prune_history(None, 3, batch=2) == 7  # keep the newest 3
        cur = await conn.execute(
            "select array_agg(job_id order by job_id) from graphile_worker._zodworker_job_history"
        )
        assert await cur.fetchone() == ([2501, 2502, 2503],)
        assert await store.prune_history(None, None) == 0  # no retention: nothing
    finally:
        await database.close()


async def test_stopping_the_client_ends_its_pending_waits(db_url: str) -> None:
    producer = ZodWorker(catalog=Media(), database_url=db_url, producer_only=True)
    await producer.initialize()
    handle = await producer.enqueue(Media.resize, Resize(url="s3://never"))
    waiting = asyncio.ensure_future(handle.result())  # no timeout: would wait forever
    await wait_until(lambda: _awaited(producer, 1), what="the wait registered")
    await producer.stop()
    with pytest.raises(LifecycleError, match=f"job {handle.id} was awaited"):
        await waiting
    with pytest.raises(LifecycleError):
        await producer.result(handle.id)
