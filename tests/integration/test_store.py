"""Both producer stores against a real PostgreSQL: adding jobs, key modes, admin functions,
errors, transactions. Every test runs twice, on :class:`Store` (async) and on
:class:`SyncStore` (sync connections), through the flavours of ``tests.support.stores``."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import psycopg
import pytest
from psycopg.rows import tuple_row

from tests.support.dbtools import count_jobs, lock_job, run_while_lock_in_flight
from tests.support.graphile import graphile_worker
from tests.support.stores import FLAVOURS, Flavour
from zodworker import (
    DatabaseError,
    Job,
    JobKeyModeError,
    JobSpec,
    JobSpecError,
    PayloadEncodeError,
)
from zodworker.db.rows import fetch_lazy, translate_errors

pytestmark = pytest.mark.anyio

AsyncConn = Any  # a psycopg AsyncConnection, or the async face of a sync Connection
Store = Any  # zodworker.Store, or SyncStore behind an async face


@pytest.fixture(params=sorted(FLAVOURS))
def flavour(request: pytest.FixtureRequest) -> Flavour:
    return FLAVOURS[request.param]


@pytest.fixture
def store(flavour: Flavour) -> Any:
    return flavour.store


@pytest.fixture
async def conn(flavour: Flavour, db_url: str) -> AsyncIterator[Any]:
    async with flavour.connect(db_url, autocommit=True) as c:
        yield c


@pytest.mark.embedded_smoke
async def test_add_job_defaults(conn: AsyncConn, store: Store) -> None:
    before = datetime.now(UTC)
    job = await store.add_job(conn, "send_email")
    assert job.task_identifier == "send_email"
    assert job.payload == {}
    assert (job.priority, job.attempts, job.max_attempts, job.revision) == (0, 0, 25, 0)
    assert (job.queue_name, job.key, job.flags, job.last_error, job.locked_at) == (
        None,
        None,
        None,
        None,
        None,
    )
    assert job.is_available
    assert before - timedelta(seconds=5) < job.run_at < datetime.now(UTC) + timedelta(seconds=5)
    assert await store.get_job(conn, job.id) == job


async def test_add_job_with_every_option(conn: AsyncConn, store: Store) -> None:
    run_at = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    job = await store.add_job(
        conn,
        "resize",
        {"w": 10, "tags": ["a", "ü"]},
        queue_name="images",
        run_at=run_at,
        max_attempts=3,
        job_key="resize:1",
        priority=-5,
        flags=["slow", "gpu"],
    )
    assert job.payload == {"w": 10, "tags": ["a", "ü"]}
    assert (job.queue_name, job.run_at, job.max_attempts, job.key, job.priority) == (
        "images",
        run_at,
        3,
        "resize:1",
        -5,
    )
    assert job.flags == {"slow": True, "gpu": True}


async def test_add_jobs_returns_one_row_per_spec_with_names(conn: AsyncConn, store: Store) -> None:
    specs = [
        JobSpec(identifier="a", payload={"i": 1}, queue_name="q1"),
        JobSpec(identifier="b", payload={"i": 2}, queue_name="q2", job_key="kb"),
        JobSpec(identifier="a", payload={"i": 3}),
    ]
    jobs = await store.add_jobs(conn, specs)
    got = {j.payload["i"]: (j.task_identifier, j.queue_name, j.key) for j in jobs}
    assert got == {1: ("a", "q1", None), 2: ("b", "q2", "kb"), 3: ("a", None, None)}
    assert await count_jobs(conn) == 3
    assert await store.add_jobs(conn, []) == []


async def test_lazy_rows_in_id_order_sort_rows_that_come_back_out_of_order(db_url: str) -> None:
    query = b"select id, name from (values (30::bigint, 'c'), (10, 'a'), (20, 'b')) as v(id, name)"
    async with await psycopg.AsyncConnection.connect(db_url) as conn:
        rows = await fetch_lazy(conn, query, None, tuple_row)
    seen: list[tuple[int, str]] = []
    ordered = rows.in_id_order(lambda position, row: seen.append((position, row[1])))
    assert [row[1] for row in ordered] == ["a", "b", "c"]
    assert seen == [(0, "a"), (1, "b"), (2, "c")]  # each row finished once, at its place
    assert ordered[-1] == (30, "c") and list(ordered) == [(10, "a"), (20, "b"), (30, "c")]


async def test_a_keyless_batch_of_known_tasks_comes_back_in_spec_order(
    conn: AsyncConn, store: Store
) -> None:
    # tasks and queues known, no keys: the lean insert, whose ids follow the specs' order
    await store.add_jobs(conn, [JobSpec(identifier="a", queue_name="q1"), JobSpec(identifier="b")])
    specs = [
        JobSpec(identifier="ab"[i % 2], payload={"i": i}, queue_name=["q1", None][i % 2])
        for i in range(50)
    ]
    jobs = await store.add_jobs(conn, specs)
    assert [(j.payload["i"], j.task_identifier, j.queue_name) for j in jobs] == [
        (i, s.identifier, s.queue_name) for i, s in enumerate(specs)
    ]
    assert [j.id for j in jobs] == sorted(j.id for j in jobs)
    assert jobs[-1] == jobs[49] and jobs[-1].payload == {"i": 49}
    assert await count_jobs(conn) == 52


# Payloads of every JSON shape, and values JSON carries as text (a datetime, a UUID).
_WHEN, _UID = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), uuid.uuid4()
_PAYLOADS: list[Any] = [
    None,
    {},
    {"when": _WHEN, "id": _UID, "nested": [1, {"x": None}]},
    [1, "x", None, 2.5],
    {"big": 2**60, "huge": -(2**70), "tiny": 1e-300, "text": "é\u2028\U0001f600", "q": '"\\'},
    "text",
    7,
]


async def test_a_lean_add_returns_exactly_the_row_it_stored(conn: AsyncConn, store: Store) -> None:
    # The lean insert sends neither the payload nor the names back: the store fills them in
    # from what it sent and matched. The job it returns must be the stored row, whatever
    # the payload was given as and whichever options were set.
    await store.add_job(conn, "lean", queue_name="lean-q")  # the task and queue exist now
    options: list[dict[str, Any]] = [
        {},
        {"queue_name": "lean-q"},
        {"priority": -3, "max_attempts": 2, "flags": ["b", "a", "b"]},
        {"run_at": _WHEN, "queue_name": "lean-q", "flags": []},
    ]
    for i, payload in enumerate(_PAYLOADS):
        job = await store.add_job(conn, "lean", payload, **options[i % len(options)])
        assert job == await store.get_job(conn, job.id)
    job = await store.add_job(conn, "lean", {"when": _WHEN}, flags=["b", "a", "b"])
    assert job.payload == {"when": "2026-01-02T03:04:05Z"}
    assert (job.task_identifier, job.flags) == ("lean", {"a": True, "b": True})


async def test_a_lean_batch_returns_exactly_the_rows_it_stored(
    conn: AsyncConn, store: Store
) -> None:
    # The lean batch's rows come back without names; the store fills them in from the
    # specs. They must be the stored rows, whatever the payload was given as.
    await store.add_jobs(conn, [JobSpec(identifier="a", queue_name="q1")])  # known: lean
    specs = [
        JobSpec(identifier="a", payload=p, queue_name=["q1", None][i % 2])
        for i, p in enumerate(_PAYLOADS)
    ]
    jobs = await store.add_jobs(conn, specs)
    stored = [await store.get_job(conn, job.id) for job in jobs]
    assert list(jobs) == stored
    assert jobs[0].payload == {} and jobs[2].payload["when"] == "2026-01-02T03:04:05Z"
    again = await store.add_jobs(conn, specs)  # read from the last row first this time
    assert [j.payload for j in reversed(again)] == [j.payload for j in reversed(stored) if j]


async def test_replace_mode_updates_the_waiting_job_in_place(conn: AsyncConn, store: Store) -> None:
    first = await store.add_job(
        conn, "t", {"v": 1}, job_key="k", queue_name="q", priority=1, max_attempts=5, flags=["f"]
    )
    await conn.execute(
        "update graphile_worker._private_jobs set attempts = 2, last_error = 'boom' where id = %s",
        (first.id,),
    )
    later = datetime.now(UTC) + timedelta(hours=1)
    second = await store.add_job(conn, "t2", {"v": 2}, job_key="k", run_at=later, priority=7)
    assert second.id == first.id
    assert second.revision == 1
    assert (second.task_identifier, second.payload, second.run_at, second.priority) == (
        "t2",
        {"v": 2},
        later,
        7,
    )
    # everything not given is reset to its default, error/retry state cleared
    assert (second.queue_name, second.max_attempts, second.flags) == (None, 25, None)
    assert (second.attempts, second.last_error) == (0, None)
    assert await count_jobs(conn) == 1


async def test_preserve_run_at_keeps_schedule_only_until_first_attempt(
    conn: AsyncConn, store: Store
) -> None:
    t1 = datetime(2031, 1, 1, tzinfo=UTC)
    t2 = datetime(2032, 1, 1, tzinfo=UTC)
    first = await store.add_job(conn, "t", job_key="k", run_at=t1)
    kept = await store.add_job(conn, "t", job_key="k", run_at=t2, job_key_mode="preserve_run_at")
    assert (kept.id, kept.run_at, kept.revision) == (first.id, t1, 1)
    await conn.execute(
        "update graphile_worker._private_jobs set attempts = 1 where id = %s", (first.id,)
    )
    moved = await store.add_job(conn, "t", job_key="k", run_at=t2, job_key_mode="preserve_run_at")
    assert (moved.id, moved.run_at, moved.attempts) == (first.id, t2, 0)


async def test_array_payloads_accumulate_under_one_key(conn: AsyncConn, store: Store) -> None:
    await store.add_job(conn, "batch", [1, 2], job_key="k")
    job = await store.add_job(conn, "batch", [3], job_key="k")
    assert job.payload == [1, 2, 3]
    job = await store.add_job(conn, "batch", {"not": "array"}, job_key="k")
    assert job.payload == {"not": "array"}


@pytest.mark.parametrize("mode", ["replace", "preserve_run_at"])
async def test_running_keyed_job_keeps_running_and_a_new_job_takes_the_key(
    conn: AsyncConn, store: Store, mode: Any
) -> None:
    old = await store.add_job(conn, "t", {"v": 1}, job_key="k")
    await lock_job(conn, old.id)
    new = await store.add_job(conn, "t", {"v": 2}, job_key="k", job_key_mode=mode)
    assert new.id != old.id
    assert (new.key, new.payload, new.revision, new.attempts) == ("k", {"v": 2}, 0, 0)
    detached = await store.get_job(conn, old.id)
    assert detached is not None
    assert detached.key is None
    assert detached.attempts == detached.max_attempts  # finishes, never retries
    assert detached.locked_by == "worker-1"


async def test_dead_keyed_job_is_replaced_by_a_new_one(conn: AsyncConn, store: Store) -> None:
    old = await store.add_job(conn, "t", job_key="k", max_attempts=1)
    await lock_job(conn, old.id)
    await conn.execute(
        "update graphile_worker._private_jobs set locked_at = null, locked_by = null where id = %s",
        (old.id,),
    )
    new = await store.add_job(conn, "t", job_key="k")
    assert new.id != old.id
    assert (await store.get_job(conn, old.id)).key is None  # type: ignore[union-attr]


async def test_unsafe_dedupe_returns_the_existing_job_untouched(
    conn: AsyncConn, store: Store
) -> None:
    first = await store.add_job(conn, "t", {"v": 1}, job_key="k", job_key_mode="unsafe_dedupe")
    await lock_job(conn, first.id)
    again = await store.add_job(
        conn, "other", {"v": 2}, job_key="k", job_key_mode="unsafe_dedupe", priority=9
    )
    assert again.id == first.id
    assert (again.task_identifier, again.payload, again.priority) == ("t", {"v": 1}, 0)
    assert again.revision == 1
    assert again.locked_by == "worker-1"
    assert await count_jobs(conn) == 1


async def test_remove_job(conn: AsyncConn, store: Store) -> None:
    waiting = await store.add_job(conn, "t", job_key="waiting")
    running = await store.add_job(conn, "t", job_key="running")
    await lock_job(conn, running.id)
    removed = await store.remove_job(conn, "waiting")
    assert removed is not None and removed.id == waiting.id
    assert await store.get_job(conn, waiting.id) is None
    kept = await store.remove_job(conn, "running")
    assert kept is not None and kept.id == running.id
    assert (kept.key, kept.attempts == kept.max_attempts, kept.locked_by) == (
        None,
        True,
        "worker-1",
    )
    assert await store.remove_job(conn, "no-such-key") is None


async def test_admin_functions_skip_live_locks_but_not_stale_ones(
    conn: AsyncConn, store: Store
) -> None:
    free = await store.add_job(conn, "t")
    live = await store.add_job(conn, "t")
    stale = await store.add_job(conn, "t")
    await lock_job(conn, live.id, age="1 hour")
    await lock_job(conn, stale.id, age="5 hours")
    ids = [free.id, live.id, stale.id]

    when = datetime(2035, 5, 5, tzinfo=UTC)
    moved = await store.reschedule_jobs(
        conn, ids, run_at=when, priority=3, attempts=0, max_attempts=9
    )
    assert sorted(j.id for j in moved) == [free.id, stale.id]
    assert all((j.run_at, j.priority, j.attempts, j.max_attempts) == (when, 3, 0, 9) for j in moved)
    untouched = await store.reschedule_jobs(conn, [free.id])  # all None: nothing changes
    assert (untouched[0].run_at, untouched[0].priority) == (when, 3)

    failed = await store.permanently_fail_jobs(conn, ids, "gave up")
    assert sorted(j.id for j in failed) == [free.id, stale.id]
    assert all(j.last_error == "gave up" and j.attempts == j.max_attempts for j in failed)
    default_reason = await store.permanently_fail_jobs(conn, [free.id])
    assert default_reason[0].last_error == "Manually marked as failed"

    done = await store.complete_jobs(conn, ids)
    assert sorted(j.id for j in done) == [free.id, stale.id]
    assert await count_jobs(conn) == 1


async def test_force_unlock_workers_releases_jobs_and_queues(conn: AsyncConn, store: Store) -> None:
    job = await store.add_job(conn, "t", queue_name="q")
    other = await store.add_job(conn, "t")
    await lock_job(conn, job.id, "dead-worker")
    await lock_job(conn, other.id, "live-worker")
    await conn.execute(
        "update graphile_worker._private_job_queues"
        " set locked_at = now(), locked_by = 'dead-worker'"
    )
    await store.force_unlock_workers(conn, ["dead-worker"])
    assert (await store.get_job(conn, job.id)).locked_by is None  # type: ignore[union-attr]
    assert (await store.get_job(conn, other.id)).locked_by == "live-worker"  # type: ignore[union-attr]
    cur = await conn.execute("select locked_by from graphile_worker._private_job_queues")
    assert await cur.fetchall() == [(None,)]


BAD_CALLS: list[tuple[str, dict[str, Any]]] = [
    ("identifier", {"identifier": ""}),
    ("identifier", {"identifier": "x" * 129}),
    ("identifier", {"identifier": 42}),
    ("queue_name", {"queue_name": "q" * 129}),
    ("queue_name", {"queue_name": ""}),
    ("job_key", {"job_key": "k" * 513}),
    ("job_key", {"job_key": ""}),
    ("job_key", {"job_key": "a\x00b"}),
    ("job_key_mode", {"job_key": "k", "job_key_mode": "upsert"}),
    ("max_attempts", {"max_attempts": 0}),
    ("max_attempts", {"max_attempts": 40000}),
    ("priority", {"priority": 32768}),
    ("priority", {"priority": -32769}),
    ("priority", {"priority": 1.5}),
    ("priority", {"priority": True}),
    ("run_at", {"run_at": datetime(2030, 1, 1)}),
    ("run_at", {"run_at": "tomorrow"}),
    ("flags", {"flags": "slow"}),
    ("flags", {"flags": ["ok", 3]}),
    ("payload", {"payload": {"when": object()}}),
    ("payload", {"payload": {1j: "complex key"}}),
]


@pytest.mark.parametrize(
    ("field", "kwargs"), BAD_CALLS, ids=[f"{f}-{i}" for i, (f, _) in enumerate(BAD_CALLS)]
)
async def test_bad_input_is_a_typed_error_naming_the_field_and_writes_nothing(
    db_url: str, flavour: Flavour, store: Store, field: str, kwargs: dict[str, Any]
) -> None:
    args = {"identifier": "task", **kwargs}
    identifier = args.pop("identifier")
    payload = args.pop("payload", None)
    async with flavour.connect(db_url) as conn:  # caller's transaction
        await store.add_job(conn, "before")
        with pytest.raises(JobSpecError) as info:
            await store.add_job(conn, identifier, payload, **args)
        assert info.value.field == field
        if field == "payload":
            assert isinstance(info.value, PayloadEncodeError)
        # the caller's transaction is still usable: nothing was sent
        assert await count_jobs(conn) == 1
        await conn.commit()
        assert await count_jobs(conn) == 1


def _nested(depth: int) -> list[Any]:
    top: list[Any] = []
    current = top
    for _ in range(depth):
        inner: list[Any] = []
        current.append(inner)
        current = inner
    return top


BAD_PAYLOADS: list[tuple[str, Any, str]] = [
    ("nan", {"x": float("nan")}, "payload.x"),
    ("infinity", {"rates": [1.0, float("inf")]}, "payload.rates[1]"),
    ("minus-infinity", [{"y": -float("inf")}], "payload[0].y"),
    ("nul-in-value", {"name": "a\x00b"}, "payload.name"),
    ("nul-in-key", {"a\x00": 1}, "payload"),
    ("too-deep", _nested(5000), "payload"),
]


@pytest.mark.parametrize(
    ("payload", "field"), [(p, f) for _, p, f in BAD_PAYLOADS], ids=[i for i, _, _ in BAD_PAYLOADS]
)
@pytest.mark.parametrize("call", ["add_job", "add_jobs"])
async def test_payloads_json_cannot_keep_are_refused_alike_by_add_job_and_add_jobs(
    db_url: str, flavour: Flavour, store: Store, payload: Any, field: str, call: str
) -> None:
    """NaN and infinities (JSON would store null), NUL characters (PostgreSQL cannot store
    them) and nesting too deep to encode: a typed error naming the place, before any SQL is
    sent, in both add paths; the caller's transaction stays usable."""
    async with flavour.connect(db_url) as conn:  # caller's transaction
        await store.add_job(conn, "before")
        with pytest.raises(PayloadEncodeError) as info:
            if call == "add_job":
                await store.add_job(conn, "t", payload)
            else:
                await store.add_jobs(
                    conn, [JobSpec(identifier="ok"), JobSpec(identifier="t", payload=payload)]
                )
        expected = field if call == "add_job" else field.replace("payload", "specs[1].payload", 1)
        assert info.value.field == expected
        assert await count_jobs(conn) == 1
        await conn.commit()
        assert await count_jobs(conn) == 1


async def test_null_and_escaped_text_that_looks_like_nul_are_kept(
    conn: AsyncConn, store: Store
) -> None:
    payload = {"none": None, "text": "a\\u0000b", "list": [None, 1.5]}
    job = await store.add_job(conn, "t", payload)
    [again] = await store.add_jobs(conn, [JobSpec(identifier="t", payload=payload)])
    assert job.payload == again.payload == payload


async def test_bad_spec_in_a_batch_names_its_index(conn: AsyncConn, store: Store) -> None:
    specs = [JobSpec(identifier="ok"), JobSpec(identifier="ok", priority=99999)]
    with pytest.raises(JobSpecError) as info:
        await store.add_jobs(conn, specs)
    assert info.value.field == "specs[1].priority"
    dup = [JobSpec(identifier="a", job_key="k"), JobSpec(identifier="b", job_key="k")]
    with pytest.raises(JobSpecError, match="twice"):
        await store.add_jobs(conn, dup)
    with pytest.raises(PayloadEncodeError) as enc:
        await store.add_jobs(conn, [JobSpec(identifier="a", payload={"x": object()})])
    assert enc.value.field == "specs[0].payload"
    assert await count_jobs(conn) == 0


async def test_database_errors_are_translated_at_one_place(conn: AsyncConn) -> None:
    with pytest.raises(JobKeyModeError) as mode, translate_errors():
        await conn.execute(
            "select graphile_worker.add_job('t', job_key => 'k', job_key_mode => 'x')"
        )
    assert mode.value.sqlstate == "GWBKM"
    assert isinstance(mode.value.__cause__, psycopg.Error)
    with pytest.raises(JobSpecError) as check, translate_errors():
        await conn.execute("select graphile_worker.add_job('t', max_attempts => 0)")
    assert check.value.field == "max_attempts"
    with pytest.raises(DatabaseError) as other, translate_errors():
        await conn.execute("select * from graphile_worker.no_such_table")
    assert other.value.sqlstate == "42P01"


async def test_works_through_a_pool(db_url: str, flavour: Flavour, store: Store) -> None:
    async with flavour.pool(db_url, min_size=1, max_size=2) as pool:
        job = await store.add_job(pool, "pooled", {"p": 1})
        async with pool.connection() as other:
            assert await store.get_job(other, job.id) == job  # committed by the pool


async def _notifications(listener: AsyncConn, sentinel: str) -> list[dict[str, Any]]:
    """Notifications on jobs:insert up to (not including) our sentinel, in order."""
    seen: list[dict[str, Any]] = []
    async for note in listener.notifies(timeout=10):
        if note.payload == sentinel:
            return seen
        seen.append(json.loads(note.payload))
    raise AssertionError("sentinel notification never arrived")


@pytest.mark.embedded_smoke
async def test_rollback_leaves_no_job_and_sends_no_notify(
    db_url: str, flavour: Flavour, store: Store
) -> None:
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as listener:
        await listener.execute('listen "jobs:insert"')
        async with flavour.connect(db_url) as conn:
            await store.add_job(conn, "t", {"n": 1})
            await store.add_job(conn, "t", {"n": 2})  # the task is known now: lean insert
            await store.add_jobs(conn, [JobSpec(identifier="t"), JobSpec(identifier="u")])
            await store.add_jobs(conn, [JobSpec(identifier="t"), JobSpec(identifier="u")])  # lean
            await conn.rollback()
            assert await count_jobs(conn) == 0
            await conn.execute("""select pg_notify('jobs:insert', 'sentinel')""")
            await conn.commit()
        assert await _notifications(listener, "sentinel") == []


@pytest.mark.embedded_smoke
async def test_commit_delivers_exactly_one_notify_per_call(
    db_url: str, flavour: Flavour, store: Store
) -> None:
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as listener:
        await listener.execute('listen "jobs:insert"')
        async with flavour.connect(db_url) as conn:
            # a new task or queue goes through the schema's add_job; a known one is the
            # store's lean insert, which must notify exactly as add_job does
            for queue in (None, None, "q", "q"):
                async with conn.transaction():
                    await store.add_job(conn, "t", {"n": 1}, queue_name=queue)
            # likewise for batches: new "u" and "r" through add_jobs, then the lean insert
            for batch in (["t", "u"], ["t", "u", "u"], ["u", "r"], ["r"]):
                async with conn.transaction():
                    await store.add_jobs(conn, [JobSpec(identifier=name) for name in batch])
            await conn.execute("""select pg_notify('jobs:insert', 'sentinel')""")
            await conn.commit()
        seen = await _notifications(listener, "sentinel")
        assert [n["count"] for n in seen] == [1, 1, 1, 1, 2, 3, 2, 1]
        assert all(set(n) == {"r", "count"} and isinstance(n["r"], float) for n in seen)


async def test_an_exception_in_the_callers_block_rolls_the_job_back(
    db_url: str, flavour: Flavour, store: Store
) -> None:
    async with flavour.connect(db_url) as conn:

        async def callers_block() -> None:
            async with conn.transaction():
                await store.add_job(conn, "t")
                raise RuntimeError("caller failed")

        with pytest.raises(RuntimeError):
            await callers_block()
        assert await count_jobs(conn) == 0


@pytest.mark.embedded_smoke
async def test_add_never_returns_null_when_a_worker_locks_the_keyed_job_mid_call(
    db_url: str, flavour: Flavour, store: Store
) -> None:
    """Upstream race #580, made deterministic.

    A worker's lock on the keyed job is in flight (uncommitted) when add_job runs: add_job's
    first statement still sees the job as available, its insert then waits on the key, and
    finds the job locked once the worker commits. add_job must still return a job.
    """
    async with flavour.connect(db_url, autocommit=True) as setup:
        old = await store.add_job(setup, "t", {"v": 1}, job_key="k")
        new = await run_while_lock_in_flight(
            db_url,
            old.id,
            lambda c: store.add_job(c, "t", {"v": 2}, job_key="k"),
            connect=flavour.connect,
        )
        assert isinstance(new, Job)
        assert new.id != old.id and new.key == "k" and new.payload == {"v": 2}
        detached = await store.get_job(setup, old.id)
        assert detached is not None and detached.key is None


async def test_concurrent_adds_on_one_key_with_a_busy_worker_never_fail(
    db_url: str, flavour: Flavour, store: Store
) -> None:
    """Many adders and a worker that keeps locking and finishing the keyed job."""
    stop = anyio.Event()
    returned: list[Job] = []

    async def adder() -> None:
        async with flavour.connect(db_url, autocommit=True) as c:
            for i in range(40):
                returned.append(await store.add_job(c, "t", {"i": i}, job_key="hot"))

    async def worker() -> None:
        async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as c:
            while not stop.is_set():
                await c.execute(
                    "update graphile_worker._private_jobs set locked_at = now(),"
                    " locked_by = 'w', attempts = attempts + 1 where key = 'hot' and is_available"
                )
                await c.execute("delete from graphile_worker._private_jobs where locked_by = 'w'")

    async with anyio.create_task_group() as tg:
        tg.start_soon(worker)
        async with anyio.create_task_group() as adders:
            for _ in range(4):
                adders.start_soon(adder)
        stop.set()
    assert len(returned) == 160
    assert all(job.key == "hot" and job.id is not None for job in returned)


async def test_the_callers_connection_settings_are_left_alone(
    db_url: str, flavour: Flavour, store: Store
) -> None:
    from psycopg.rows import dict_row

    async with flavour.connect(db_url, autocommit=True, row_factory=dict_row) as conn:
        job = await store.add_job(conn, "brand_new_task", {"a": 1}, queue_name="brand_new_queue")
        assert (job.task_identifier, job.queue_name) == ("brand_new_task", "brand_new_queue")
        [again] = await store.add_jobs(conn, [JobSpec(identifier="another_new_one")])
        assert again.task_identifier == "another_new_one"
        cur = await conn.execute("""select '{"x": 1.5}'::json as doc""")
        row = await cur.fetchone()
        assert row == {"doc": {"x": 1.5}}  # still dict rows, still psycopg's own JSON loader


@pytest.mark.node
async def test_keyed_adds_retry_when_graphile_workers_functions_drop_them(
    flavour: Flavour, store: Store, empty_db_url: str
) -> None:
    """On a schema installed by graphile-worker, its add_jobs loses the lock race (#580): a
    keyed spec whose job a worker locks during the call gets no row. Both stores add it
    again, so every spec has its row."""
    graphile_worker().schema_only(empty_db_url, "graphile_worker")
    async with flavour.connect(empty_db_url, autocommit=True) as setup:
        old = await store.add_job(setup, "t", {"v": 1}, job_key="k")

        async def raw_add_jobs(c: AsyncConn) -> object:
            cur = await c.execute(
                "select count(*) from graphile_worker.add_jobs(array["
                "  ('t', '{}', null, null, null, 'k', null, null)::graphile_worker.job_spec])"
            )
            return (await cur.fetchone())[0]

        assert (
            await run_while_lock_in_flight(
                empty_db_url, old.id, raw_add_jobs, connect=flavour.connect
            )
            == 0
        )  # upstream: the spec is lost

        again = await store.add_job(setup, "t", {"v": 2}, job_key="k2")
        specs = [
            JobSpec(identifier="t", payload={"v": 3}, job_key="k2"),
            JobSpec(identifier="u", payload={"v": 4}),
        ]
        added = await run_while_lock_in_flight(
            empty_db_url, again.id, lambda c: store.add_jobs(c, specs), connect=flavour.connect
        )
        assert isinstance(added, list)
        assert sorted((job.payload["v"], job.key) for job in added) == [(3, "k2"), (4, None)]
        assert all(job.id != again.id for job in added)


async def test_every_job_field_comes_from_its_own_column(db_url: str) -> None:
    """Job rows are built positionally: each field must hold its own column's value. A job
    with a distinct value in every column is read back through a job-returning query and
    compared with the table row as JSON."""
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        await _compare_job_fields(conn)


async def _compare_job_fields(conn: psycopg.AsyncConnection[Any]) -> None:
    from zodworker import Store as AsyncStore
    from zodworker.admin import Admin

    for other in ("before-1", "before-2"):  # so that task_id and job_queue_id differ
        await AsyncStore().add_job(conn, other, {})
    job = await AsyncStore().add_job(
        conn,
        "fields",
        {"p": 1},
        queue_name="fq",
        run_at=datetime.now(UTC) - timedelta(minutes=5),
        max_attempts=7,
        job_key="fk",
        priority=3,
        flags=["f1"],
    )
    await lock_job(conn, job.id, "field-worker", age="1 minute")
    await conn.execute(
        "update graphile_worker._private_jobs set last_error = 'boom', revision = 2 where id = %s",
        (job.id,),
    )
    view = await Admin().get_job(conn, job.id)
    assert view is not None
    got = view.job
    cur = await conn.execute(
        "select to_jsonb(j) from graphile_worker._private_jobs j where id = %s", (job.id,)
    )
    row = await cur.fetchone()
    assert row is not None
    table: dict[str, Any] = row[0]
    stamps = ("run_at", "created_at", "updated_at", "locked_at")
    for name in ("id", "payload", "priority", "attempts", "max_attempts", "last_error",
                 "key", "locked_by", "revision", "flags", "task_id", "job_queue_id",
                 "is_available"):  # fmt: skip
        assert getattr(got, name) == table[name], name
    for name in stamps:
        assert getattr(got, name) == datetime.fromisoformat(table[name]), name
    assert (got.task_identifier, got.queue_name) == ("fields", "fq")
    assert (got.attempts, got.revision, got.is_available) == (1, 2, False)
    assert got.task_id != got.job_queue_id
