"""ZodWorker against a real PostgreSQL: transactional enqueue, validation, defaults, keys,
dynamic queues, dequeue, invalid stored payloads and the lifecycle."""

from __future__ import annotations

import asyncio
import itertools
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import psycopg
import pytest
from pydantic import BaseModel, Field

from tests.support.dbtools import count_jobs, wait_until
from zodworker import (
    NOT_GIVEN,
    CatalogError,
    Cleanup,
    ConfigError,
    JobHelpers,
    PayloadEncodeError,
    PayloadValidationError,
    TaskCatalog,
    ZodWorker,
    ZodworkerError,
    task,
)

pytestmark = pytest.mark.anyio

AsyncConn = psycopg.AsyncConnection[Any]


class StartRun(BaseModel):
    id: str = Field(min_length=1)


class Email(msgspec.Struct):
    to: str
    attempts_left: int = 3


class PerformRun(BaseModel):
    id: str
    step: int


RAN: list[tuple[str, Any]] = []


async def start_run(payload: StartRun, helpers: JobHelpers) -> None:
    assert isinstance(payload, StartRun)  # handlers get the model, not a dict
    RAN.append(("startRun", payload.id))


def send_email(payload: Email, helpers: JobHelpers) -> None:
    assert isinstance(payload, Email)
    RAN.append(("sendEmail", payload.to))


class Platform(TaskCatalog):
    startRun = task(StartRun, handler=start_run, queue_name="executions", max_attempts=13)
    sendEmail = task(Email, handler=send_email, priority=5, job_key="email")
    performRunExecution = task(
        PerformRun,
        queue_name=lambda p: f"runs:{p.id}",
        job_key=lambda p: f"job_run:EXECUTE_JOB:{p.id}:{p.step}",
        max_attempts=1,
    )


@pytest.fixture
async def client(db_url: str) -> Any:
    RAN.clear()
    worker = ZodWorker(catalog=Platform(), database_url=db_url, poll_interval=0.05)
    await worker.initialize()
    try:
        yield worker
    finally:
        await worker.stop()


async def test_commit_runs_the_job_once_rollback_leaves_nothing(
    client: ZodWorker, db_url: str
) -> None:
    async with await psycopg.AsyncConnection.connect(db_url) as conn:
        await conn.execute("create table runs (id text primary key)")
        await conn.commit()
        async with conn.transaction():
            await conn.execute("insert into runs values ('run_1')")
            await client.enqueue(Platform.startRun, StartRun(id="run_1"), tx=conn)

        async def failing_request() -> None:
            async with conn.transaction():
                await conn.execute("insert into runs values ('run_2')")
                await client.enqueue("startRun", {"id": "run_2"}, tx=conn)
                raise RuntimeError("request failed")

        with pytest.raises(RuntimeError):
            await failing_request()
        cur = await conn.execute("select id from runs")
        assert await cur.fetchall() == [("run_1",)]
        await conn.commit()

        async def ran() -> bool:
            return ("startRun", "run_1") in RAN and await count_jobs(conn) == 0

        await wait_until(ran, what="the committed job to run")
    assert RAN == [("startRun", "run_1")]


async def test_validation_errors_name_the_field_and_write_nothing(
    client: ZodWorker, conn: AsyncConn
) -> None:
    with pytest.raises(PayloadValidationError) as info:
        await client.enqueue("startRun", {"id": ""}, tx=conn)
    assert info.value.field == "payload.id"
    assert info.value.task == "startRun"
    with pytest.raises(PayloadValidationError) as info2:
        await client.enqueue("sendEmail", {"to": "a@b.c", "attempts_left": "many"}, tx=conn)
    assert info2.value.field == "payload.attempts_left"
    with pytest.raises(PayloadValidationError):
        await client.enqueue(Platform.startRun, StartRun.model_construct(id=""), tx=conn)
    with pytest.raises(CatalogError, match="did you mean 'startRun'") as unknown:
        await client.enqueue("startRn", {"id": "x"}, tx=conn)
    assert isinstance(unknown.value, LookupError)
    assert await count_jobs(conn) == 0


class Measure(BaseModel):
    score: float = 0.0
    meta: dict[str, Any] = {}


class Metrics(TaskCatalog):
    measure = task(Measure)


@pytest.mark.parametrize("many", [False, True])
async def test_nan_and_infinity_are_refused_in_typed_and_untyped_fields_alike(
    db_url: str, many: bool
) -> None:
    # JSON has no NaN or infinity: the store refuses them, and so must the typed client, in a
    # float field (kept by pydantic's dump) and inside an Any field (which pydantic's JSON
    # dump would silently turn into null), before any SQL, leaving the transaction usable.
    bad = [
        (Measure(score=float("nan")), "payload.score"),
        (Measure(meta={"rates": [1.0, {"peak": float("inf")}]}), "payload.meta.rates[1].peak"),
        ({"meta": {"low": -float("inf")}}, "payload.meta.low"),
    ]
    async with (
        ZodWorker(catalog=Metrics(), database_url=db_url) as client,
        await psycopg.AsyncConnection.connect(db_url) as conn,  # the caller's transaction
    ):
        await client.enqueue(Metrics.measure, Measure(meta={"x": None, "y": 1.5}), tx=conn)
        for payload, field in bad:
            with pytest.raises(PayloadEncodeError) as info:
                if many:
                    items = [(Metrics.measure, Measure()), (Metrics.measure, payload)]
                    await client.enqueue_many(items, tx=conn)
                else:
                    await client.enqueue(Metrics.measure, payload, tx=conn)
            assert info.value.field == (f"specs[1].{field}" if many else field)
        assert await count_jobs(conn) == 1
        await conn.commit()
        cur = await conn.execute("select payload from graphile_worker._private_jobs")
        assert await cur.fetchall() == [({"score": 0.0, "meta": {"x": None, "y": 1.5}},)]


async def test_defaults_overlay_not_given_none_and_zero(client: ZodWorker, conn: AsyncConn) -> None:
    job = await client.enqueue("startRun", {"id": "a"}, tx=conn)
    assert (job.queue_name, job.max_attempts, job.priority) == ("executions", 13, 0)
    job = await client.enqueue(
        "startRun", {"id": "b"}, tx=conn, queue_name=None, max_attempts=NOT_GIVEN, priority=0
    )
    assert (job.queue_name, job.max_attempts, job.priority) == (None, 13, 0)
    later = datetime.now(UTC) + timedelta(hours=1)  # not run meanwhile by the client's worker
    job = await client.enqueue("sendEmail", Email(to="x@y.z"), tx=conn, run_at=later)  # str key
    assert (job.key, job.priority, job.payload) == ("email", 5, {"to": "x@y.z", "attempts_left": 3})
    again = await client.enqueue("sendEmail", {"to": "q@r.s"}, tx=conn, priority=0, run_at=later)
    assert (again.id, again.revision, again.priority) == (job.id, 1, 0)  # replaced, 0 kept
    run = await client.enqueue(
        Platform.performRunExecution, PerformRun(id="r9", step=2), tx=conn, run_at=later
    )
    assert (run.queue_name, run.key, run.max_attempts, run.run_at) == (
        "runs:r9",
        "job_run:EXECUTE_JOB:r9:2",
        1,
        later,
    )


@pytest.mark.parametrize("mode", ["replace", "preserve_run_at", "unsafe_dedupe"])
async def test_re_enqueueing_a_key_follows_the_mode(
    client: ZodWorker, conn: AsyncConn, mode: Any
) -> None:
    t1 = datetime(2031, 1, 1, tzinfo=UTC)
    t2 = datetime(2032, 1, 1, tzinfo=UTC)
    first = await client.enqueue("startRun", {"id": "1"}, tx=conn, job_key="k", run_at=t1)
    second = await client.enqueue(
        "startRun", {"id": "2"}, tx=conn, job_key="k", run_at=t2, job_key_mode=mode
    )
    assert second.id == first.id
    expected = {
        "replace": ({"id": "2"}, t2),
        "preserve_run_at": ({"id": "2"}, t1),
        "unsafe_dedupe": ({"id": "1"}, t1),
    }[mode]
    assert (second.payload, second.run_at) == expected


async def test_dequeue_in_the_callers_transaction(client: ZodWorker, db_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(db_url) as conn:
        job = await client.enqueue(
            Platform.performRunExecution, PerformRun(id="r1", step=1), tx=conn
        )
        await conn.commit()
        async with conn.transaction():
            removed = await client.dequeue(job.key or "", tx=conn)
            assert removed is not None and removed.id == job.id
        assert await client.dequeue("job_run:EXECUTE_JOB:nope", tx=conn) is None
        assert await count_jobs(conn) == 0
        await conn.commit()


async def test_enqueue_many_validates_everything_first(client: ZodWorker, conn: AsyncConn) -> None:
    jobs = await client.enqueue_many(
        [("startRun", {"id": "a"}), (Platform.sendEmail, Email(to="b@c.d"))], tx=conn
    )
    assert sorted(j.task_identifier for j in jobs) == ["sendEmail", "startRun"]
    with pytest.raises(PayloadValidationError):
        await client.enqueue_many([("startRun", {"id": "c"}), ("startRun", {"nope": 1})], tx=conn)
    assert await count_jobs(conn) == 2


async def test_invalid_stored_payload_fails_permanently_with_a_clear_error(
    client: ZodWorker, conn: AsyncConn
) -> None:
    # as Node (or raw SQL, or an older deploy) might add it
    await conn.execute("select graphile_worker.add_job('startRun', '{\"run\": 1}'::json)")

    async def failed() -> bool:
        cur = await conn.execute(
            "select attempts, max_attempts, last_error from graphile_worker._private_jobs"
        )
        row = await cur.fetchone()
        return row is not None and row[2] is not None

    await wait_until(failed, what="the job to fail")
    cur = await conn.execute(
        "select attempts, max_attempts, last_error, locked_at from graphile_worker._private_jobs"
    )
    attempts, max_attempts, last_error, locked_at = await cur.fetchone()  # type: ignore[misc]
    assert (attempts, max_attempts, locked_at) == (25, 25, None)  # used up: never retried
    assert "invalid payload" in last_error and "payload.id" in last_error
    assert RAN == []


async def test_dynamic_queues_run_one_job_per_run_at_a_time(db_url: str) -> None:
    running: dict[str, int] = {}
    peak: dict[str, int] = {}
    done = itertools.count(1)
    finished = asyncio.Event()

    async def perform(payload: PerformRun, helpers: JobHelpers) -> None:
        queue = f"runs:{payload.id}"
        running[queue] = running.get(queue, 0) + 1
        peak[queue] = max(peak.get(queue, 0), running[queue])
        await asyncio.sleep(0)
        running[queue] -= 1
        if next(done) == 1000:
            finished.set()

    class Runs(TaskCatalog):
        performRunExecution = task(
            PerformRun, handler=perform, queue_name=lambda p: f"runs:{p.id}", max_attempts=1
        )

    async with ZodWorker(
        catalog=Runs(), database_url=db_url, concurrency=10, local_queue_size=100
    ) as client:
        items: list[tuple[Any, Any]] = [
            (Runs.performRunExecution, PerformRun(id=f"run_{n % 50}", step=n)) for n in range(1000)
        ]
        await client.enqueue_many(items)
        await asyncio.wait_for(finished.wait(), 60)
    assert len(peak) == 50
    assert set(peak.values()) == {1}


async def test_lifecycle_is_idempotent_and_explains_misuse(db_url: str) -> None:
    client = ZodWorker(catalog=Platform(), database_url=db_url, producer_only=True)
    await client.stop()  # before initialize: fine
    client = ZodWorker(catalog=Platform(), database_url=db_url, producer_only=True)
    with pytest.raises(ZodworkerError, match="initialize"):
        await client.enqueue("startRun", {"id": "x"})
    await client.initialize()
    await client.initialize()
    assert client.worker_pool is None  # producer-only: nothing runs here
    job = await client.enqueue("startRun", {"id": "x"})
    assert json.dumps(job.payload) == '{"id": "x"}'
    await client.stop()
    await client.stop()
    with pytest.raises(ZodworkerError, match="new one"):
        await client.initialize()


def test_sync_producers_enqueue_and_dequeue_in_their_transaction(db_url: str) -> None:
    client = ZodWorker(catalog=Platform(), database_url=db_url, producer_only=True)
    with psycopg.connect(db_url) as conn:
        with conn.transaction():
            job = client.enqueue_sync(Platform.startRun, StartRun(id="s1"), tx=conn)
            client.enqueue_sync("sendEmail", {"to": "a@b.c"}, tx=conn, priority=0, job_key=None)
        assert (job.queue_name, job.max_attempts, job.payload) == ("executions", 13, {"id": "s1"})
        with pytest.raises(RuntimeError), conn.transaction():
            client.enqueue_sync("startRun", {"id": "s2"}, tx=conn)
            raise RuntimeError("rolled back")
        with pytest.raises(PayloadValidationError):
            client.enqueue_sync("startRun", {"id": 5}, tx=conn)
        with pytest.raises(TypeError, match="prioirty"):
            client.enqueue_sync("startRun", {"id": "s3"}, tx=conn, prioirty=1)  # type: ignore[call-overload]
        keyed = client.enqueue_sync(
            Platform.performRunExecution, PerformRun(id="r", step=1), tx=conn
        )
        assert client.dequeue_sync(keyed.key or "", tx=conn) is not None
        assert client.dequeue_sync("no-such-key", tx=conn) is None
        rows = conn.execute(
            "select task_identifier, priority, key from graphile_worker.jobs order by id"
        ).fetchall()
        assert rows == [("startRun", 0, None), ("sendEmail", 0, None)]


async def test_cleanup_removes_only_old_dead_jobs_at_most_n_per_run(
    client: ZodWorker, conn: AsyncConn
) -> None:
    for n in range(5):
        await client.enqueue(
            "startRun", {"id": f"dead{n}"}, tx=conn, run_at=datetime(2099, 1, 1, tzinfo=UTC)
        )
    await conn.execute(
        "update graphile_worker._private_jobs set attempts = max_attempts,"
        " updated_at = now() - interval '10 days'"
    )
    fresh = await client.enqueue(
        "startRun", {"id": "fresh"}, tx=conn, run_at=datetime(2099, 1, 1, tzinfo=UTC)
    )
    await conn.execute(
        "update graphile_worker._private_jobs set attempts = max_attempts where id = %s",
        (fresh.id,),
    )
    alive = await client.enqueue(
        "startRun", {"id": "alive"}, tx=conn, run_at=datetime(2099, 1, 1, tzinfo=UTC)
    )
    policy = Cleanup(ttl=7 * 24 * 3600, max_count=3)
    assert await client.cleanup_now(policy) == 3
    assert await client.cleanup_now(policy) == 2
    assert await client.cleanup_now(policy) == 0
    cur = await conn.execute("select id from graphile_worker._private_jobs order by id")
    assert [row[0] for row in await cur.fetchall()] == [fresh.id, alive.id]
    with pytest.raises(ConfigError, match=r"cleanup\.max_count"):
        Cleanup(max_count=0)


async def test_reporter_gets_metrics_and_permanent_failures(db_url: str) -> None:
    reports: list[tuple[str, dict[str, Any]]] = []
    got_failure = asyncio.Event()

    def reporter(event: str, props: dict[str, Any]) -> None:
        reports.append((event, props))
        if event == "job:failed":
            got_failure.set()

    async with (
        ZodWorker(
            catalog=Platform(), database_url=db_url, reporter=reporter, metrics_interval=0.05
        ) as client,
        await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn,
    ):
        later = datetime(2099, 1, 1, tzinfo=UTC)
        for n in range(3):
            await client.enqueue("startRun", {"id": f"w{n}"}, tx=conn, run_at=later)
        await client.enqueue(Platform.sendEmail, Email(to="x@y.z"), tx=conn, run_at=later)
        await conn.execute(
            "update graphile_worker._private_jobs set run_at = now() - interval '1 hour'"
            " where payload->>'id' = 'w0'"
        )
        await conn.execute("select graphile_worker.add_job('startRun', '{}'::json)")  # invalid
        await asyncio.wait_for(got_failure.wait(), 30)
        metrics = await client.metrics()
    failed = [props for event, props in reports if event == "job:failed"]
    assert failed[0]["task"] == "startRun" and "invalid payload" in failed[0]["error"]
    assert any(event == "metrics" for event, _ in reports)
    # w0 ran (startRun handler), 2 startRun + 1 sendEmail wait for 2099: not runnable
    assert metrics["runnable_by_task"] == {}
    assert metrics["runnable"] == 0


async def test_recurring_tasks_backfill_and_run_with_their_tick(db_url: str) -> None:
    from zodworker import CronTick, recurring

    ticks: list[CronTick] = []
    done = asyncio.Event()

    async def every_minute(tick: CronTick, helpers: JobHelpers) -> None:
        ticks.append(tick)
        if len(ticks) >= 10:
            done.set()

    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        # the item ran until ten minutes ago: an outage the scheduler must fill
        await conn.execute(
            "insert into graphile_worker._private_known_crontabs"
            " (identifier, known_since, last_execution)"
            " values ('tick', now() - interval '1 day',"
            " date_trunc('minute', now()) - interval '10 minutes')"
        )
    with pytest.raises(ConfigError, match="also a catalog task"):
        ZodWorker(
            catalog=Platform(), recurring_tasks={"startRun": recurring("* * * * *", every_minute)}
        )
    async with ZodWorker(
        catalog=Platform(),
        database_url=db_url,
        recurring_tasks={"tick": recurring("* * * * *", every_minute, fill="1h")},
        concurrency=4,
    ):
        await asyncio.wait_for(done.wait(), 30)
    assert all(tick.backfilled for tick in ticks[:9])
    stamps = sorted(tick.ts for tick in ticks)
    assert len(set(stamps)) == len(stamps)  # each minute once
    assert all(ts.second == 0 and ts.tzinfo is not None for ts in stamps)


async def test_client_enqueue_notifies_only_on_commit(db_url: str) -> None:
    client = ZodWorker(catalog=Platform(), database_url=db_url, producer_only=True)
    async with (
        await psycopg.AsyncConnection.connect(db_url, autocommit=True) as listener,
        await psycopg.AsyncConnection.connect(db_url) as conn,
    ):
        await listener.execute('listen "jobs:insert"')
        async with conn.transaction(force_rollback=True):
            await client.enqueue("startRun", {"id": "rolled-back"}, tx=conn)
        async with conn.transaction():
            await client.enqueue("startRun", {"id": "committed"}, tx=conn)
        await conn.execute("select pg_notify('jobs:insert', 'sentinel')")
        await conn.commit()
        seen = []
        async for note in listener.notifies(timeout=10):
            if note.payload == "sentinel":
                break
            seen.append(json.loads(note.payload))
        assert [n["count"] for n in seen] == [1]  # the committed one only
        assert await count_jobs(conn) == 1
