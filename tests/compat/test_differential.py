"""Differential test: zodworker's SQL API behaves like graphile-worker 0.18's, call by call.

One database holds two schemas: ``gw``, installed by the real graphile-worker 0.18 (from npm),
and ``zw``, installed by ``zodworker.migrate``. Hypothesis draws a sequence of operations (the
SQL API: add_job, add_jobs, remove_job, complete_jobs, permanently_fail_jobs, reschedule_jobs,
force_unlock_workers; plus what a worker does to the tables: lock a job, fail it, run it out
of attempts) and applies each one to ``gw`` and then to ``zw``. Every outcome (the error's
SQLSTATE, or the rows returned) and the whole state after every operation must be equal.

Each example runs in one transaction that is rolled back at the end, so ``now()`` is the same
instant for both schemas (defaults and timestamps match exactly) and nothing needs cleaning.
Each operation runs in its own savepoint, so a failing call leaves the state as it was.

Ids differ between the schemas (each has its own sequences), so rows are compared without
them: a job is named by its position in the list of distinct job ids its schema returned so
far (``job``, or ``"new"`` for a row not seen before), its task and queue by their names.
Jobs are listed in that order, not by id: the order in which one add_jobs call assigns ids
to its new rows depends on the query plan. All other columns are compared as they are
(payload parsed from its JSON text), timestamps named ("now", "past", ...) for reading. As
every timestamp written in an example is the same now(), each job's updated_at is reset to a
fixed past instant ("untouched") before each operation, so it shows which rows were written.

Operations name jobs by such positions too (see ``job_refs``), except the worker actions:
``Lock`` and ``Fail`` pick among the jobs a worker could lock / holds, so they rarely miss.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import itertools
import os
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import psycopg
import pytest
from hypothesis import HealthCheck, event, example, given, settings, target
from hypothesis import strategies as st
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Json

from tests.conftest import create_database, drop_database
from tests.support.graphile import graphile_worker
from zodworker import JobSpec, SyncStore, migrate

pytestmark = pytest.mark.node

GW = "gw"  # installed by graphile-worker 0.18: the oracle
ZW = "zw"  # installed by zodworker

EXAMPLES = int(os.environ.get("ZODWORKER_DIFF_EXAMPLES", "150"))

Conn = psycopg.Connection[Any]
RunAt = Literal["past", "future"] | None

RUN_AT: dict[RunAt, dt.datetime | None] = {
    None: None,
    "past": dt.datetime(2020, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
    "future": dt.datetime(2999, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
}

# The columns of _private_jobs (a Job has them all, plus the task and queue names).
JOB_COLUMNS = (
    "id", "job_queue_id", "task_id", "payload", "priority", "run_at", "attempts",
    "max_attempts", "last_error", "created_at", "updated_at", "key", "locked_at",
    "locked_by", "revision", "flags", "is_available",
)  # fmt: skip

# Columns of a _private_jobs row left out of comparisons: ids are per schema (job, task and
# queue are compared by position / name instead).
DROPPED = frozenset({"id", "job_queue_id", "task_id"})

# Every timestamp written in an example is now(), so to see which rows an operation touched,
# every job's updated_at is set to this instant before each operation.
UNTOUCHED = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)


class _JsonNull:
    """The JSON value ``null`` as a payload (SQL NULL is ``None``)."""

    def __repr__(self) -> str:
        return "JSON_NULL"


JSON_NULL = _JsonNull()


# -- operations ---------------------------------------------------------------------------------


class _Op:
    """Repr shows only the fields that differ from their defaults, so failures read well."""

    def __repr__(self) -> str:
        parts = []
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if f.default is dataclasses.MISSING or value != f.default:
                parts.append(f"{f.name}={value!r}")
        return f"{type(self).__name__}({', '.join(parts)})"


@dataclass(frozen=True, repr=False)
class Spec(_Op):
    """One job_spec row for add_jobs."""

    identifier: str
    payload: Any = None
    queue_name: str | None = None
    run_at: RunAt = None
    max_attempts: int | None = None
    job_key: str | None = None
    priority: int | None = None
    flags: tuple[str, ...] | None = None


@dataclass(frozen=True, repr=False)
class AddJob(_Op):
    identifier: str
    payload: Any = None
    queue_name: str | None = None
    run_at: RunAt = None
    max_attempts: int | None = None
    job_key: str | None = None
    priority: int | None = None
    flags: tuple[str, ...] | None = None
    job_key_mode: str | None = None
    # False: a None argument is left out (the function's default applies);
    # True: it is passed as an explicit SQL NULL.
    explicit_nulls: bool = False


@dataclass(frozen=True, repr=False)
class StoreAddJob(Spec):
    """zodworker's ``Store.add_job`` (its lean single insert when there is no key and the
    task and queue exist, else the schema's add_job) against graphile-worker's add_job,
    with the fields of one job_spec."""


@dataclass(frozen=True, repr=False)
class StoreAddJobs(_Op):
    """zodworker's ``Store.add_jobs`` (its lean insert when no spec has a key and every task
    and queue exists, else the schema's add_jobs) against graphile-worker's add_jobs."""

    specs: tuple[Spec, ...]


@dataclass(frozen=True, repr=False)
class AddJobs(_Op):
    specs: tuple[Spec, ...]
    # "omit": argument left out; None: explicit NULL.
    preserve_run_at: bool | Literal["omit"] | None = "omit"


@dataclass(frozen=True, repr=False)
class RemoveJob(_Op):
    key: str | None


@dataclass(frozen=True, repr=False)
class CompleteJobs(_Op):
    jobs: tuple[int, ...]  # job_refs, as are the other ops' ``jobs`` and ``job``


@dataclass(frozen=True, repr=False)
class PermanentlyFailJobs(_Op):
    jobs: tuple[int, ...]
    reason: str | None = None


@dataclass(frozen=True, repr=False)
class RescheduleJobs(_Op):
    jobs: tuple[int, ...]
    run_at: RunAt = None
    priority: int | None = None
    attempts: int | None = None
    max_attempts: int | None = None


@dataclass(frozen=True, repr=False)
class ForceUnlockWorkers(_Op):
    workers: tuple[str, ...]


@dataclass(frozen=True, repr=False)
class Lock(_Op):
    """A worker fetches a job: the ``nth_lockable`` (modulo their number) of the jobs a worker
    could fetch (available, and their queue free), in the order they were first returned.

    Their run_at is not looked at: time stands still within an example, so that stands for
    "later, when the job is due" (only preserve_run_at compares run_at, and not with now()).
    """

    nth_lockable: int = 0
    worker: str = "w1"
    age: str = "0 s"  # '5 hours': the lock is stale (its worker presumably died)


@dataclass(frozen=True, repr=False)
class Fail(_Op):
    """A worker releases a job it holds as failed, and its queue.

    The job is the ``nth_locked`` (modulo their number) of the locked jobs, in the order
    they were first returned.
    """

    nth_locked: int = 0


@dataclass(frozen=True, repr=False)
class MakeDead(_Op):
    """The job runs out of attempts (attempts = max_attempts), whatever its state."""

    job: int


Op = (
    AddJob
    | StoreAddJob
    | StoreAddJobs
    | AddJobs
    | RemoveJob
    | CompleteJobs
    | PermanentlyFailJobs
    | RescheduleJobs
    | ForceUnlockWorkers
    | Lock
    | Fail
    | MakeDead
)


# -- strategies ---------------------------------------------------------------------------------

identifiers = st.sampled_from(["a", "b", "c"])
payloads = st.one_of(
    st.none(),
    st.dictionaries(st.sampled_from(["x", "y"]), st.integers(0, 3), max_size=2),
    st.lists(
        st.one_of(st.integers(0, 3), st.dictionaries(st.just("n"), st.integers(0, 3))),
        max_size=3,
    ),
    st.sampled_from([JSON_NULL, "s", 7]),
)
queue_names = st.sampled_from([None, "q1", "q2"])
run_ats: st.SearchStrategy[RunAt] = st.sampled_from([None, "past", "future"])
max_attempts = st.sampled_from([None, 1, 2, 25])
job_keys = st.sampled_from([None, "k1", "k2", "k3"])
priorities = st.sampled_from([None, -1, 0, 5])
flag_sets = st.sampled_from([None, (), ("a",), ("a", "b")])
key_modes = st.sampled_from([None, "replace", "preserve_run_at", "unsafe_dedupe", "bogus"])
# A job: -1 is no job at all; n >= 0 is the n-th id (modulo their number) the schema has
# returned so far, which may be a job since deleted (then it matches nothing, on both sides).
job_refs = st.integers(-1, 3)
job_ref_lists = st.lists(job_refs, min_size=1, max_size=3).map(tuple) | st.just(())
workers = st.sampled_from(["w1", "w2"])

specs = st.builds(
    Spec,
    identifier=identifiers,
    payload=payloads,
    queue_name=queue_names,
    run_at=run_ats,
    max_attempts=max_attempts,
    job_key=st.sampled_from([None, None, None, "k1", "k2", "k3"]),
    priority=priorities,
    flags=flag_sets,
)

add_job = st.builds(
    AddJob,
    identifier=identifiers,
    payload=payloads,
    queue_name=queue_names,
    run_at=run_ats,
    max_attempts=max_attempts,
    job_key=job_keys,
    priority=priorities,
    flags=flag_sets,
    job_key_mode=key_modes,
    explicit_nulls=st.booleans(),
)
# What the store takes of a job_spec (JSON null is not among its payloads: None is {})
STORE_SPEC: dict[str, st.SearchStrategy[Any]] = {
    "identifier": identifiers,
    "payload": payloads.filter(lambda p: p is not JSON_NULL),
    "queue_name": queue_names,
    "run_at": run_ats,
    "max_attempts": max_attempts,
    "priority": priorities,
    "flags": flag_sets,
}
store_add_job = st.builds(
    StoreAddJob, **STORE_SPEC, job_key=st.sampled_from([None, None, None, "k1"])
)
add_jobs = st.builds(
    AddJobs,
    specs=st.lists(specs, max_size=3).map(tuple),
    preserve_run_at=st.sampled_from(["omit", None, False, True]),
)

# Store batches: keys rare (a keyless batch takes the lean insert), at most once each
store_add_jobs = st.builds(
    StoreAddJobs,
    specs=st.lists(
        st.builds(
            Spec, **STORE_SPEC, job_key=st.sampled_from([None, None, None, None, None, "k1", "k2"])
        ),
        max_size=3,
        unique_by=lambda spec: spec.job_key or object(),
    ).map(tuple),
)

lock = st.builds(
    Lock,
    nth_lockable=st.integers(0, 2),
    worker=workers,
    age=st.sampled_from(["0 s", "5 hours"]),
)
fail = st.builds(Fail, nth_locked=st.integers(0, 2))

# How often each kind of operation is drawn: weighted towards the ones that create and lock
# jobs, so that the others mostly find something to act on.
WEIGHTED_OPS: list[tuple[st.SearchStrategy[Any], int]] = [
    (add_job, 6),
    (store_add_job, 4),
    (add_jobs, 2),
    (store_add_jobs, 2),
    (lock, 4),
    (fail, 2),
    (st.builds(RemoveJob, key=job_keys), 3),
    (st.builds(CompleteJobs, jobs=job_ref_lists), 2),
    (
        st.builds(PermanentlyFailJobs, jobs=job_ref_lists, reason=st.sampled_from([None, "why"])),
        1,
    ),
    (
        st.builds(
            RescheduleJobs,
            jobs=job_ref_lists,
            run_at=run_ats,
            priority=priorities,
            attempts=st.sampled_from([None, 0, 1]),
            max_attempts=max_attempts,
        ),
        1,
    ),
    (
        st.builds(
            ForceUnlockWorkers,
            workers=st.lists(st.sampled_from(["w1", "w2", "w3"]), max_size=2).map(tuple),
        ),
        1,
    ),
    (st.builds(MakeDead, job=job_refs), 1),
]
ops: st.SearchStrategy[Op] = st.sampled_from(
    [strategy for strategy, weight in WEIGHTED_OPS for _ in range(weight)]
).flatmap(lambda strategy: strategy)


# -- applying an operation to one schema ---------------------------------------------------------


def _payload(value: Any) -> Json | None:
    if value is None:
        return None  # SQL NULL
    return Json(None if value is JSON_NULL else value)


def _flags(value: tuple[str, ...] | None) -> list[str] | None:
    return None if value is None else list(value)


def _job_spec(spec: Spec) -> JobSpec:
    """What the store is given for a drawn job_spec."""
    return JobSpec(
        identifier=spec.identifier,
        payload=spec.payload,
        queue_name=spec.queue_name,
        run_at=RUN_AT[spec.run_at],
        max_attempts=spec.max_attempts,
        job_key=spec.job_key,
        priority=spec.priority,
        flags=_flags(spec.flags),
    )


def _job_id(ids: Sequence[int], ref: int) -> int:
    return ids[ref % len(ids)] if ref >= 0 and ids else -1


def _job_ids(ids: Sequence[int], refs: Sequence[int]) -> list[int]:
    return [_job_id(ids, ref) for ref in refs]


def _fetch(
    conn: Conn, query: sql.Composed | sql.SQL, params: Sequence[Any] = ()
) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(query, params)
        return cur.fetchall()


@dataclass
class Outcome:
    kind: Literal["row", "rows", "done", "error"]
    # row: the returned row (None for a null composite); rows: the returned rows (in
    # _row_order); done: what the statement(s) affected; error: the SQLSTATE.
    value: Any
    message: str | None = None  # error message (not compared: it names the schema)
    raw: list[dict[str, Any]] = dataclasses.field(default_factory=list)  # rows with their ids


def _execute(conn: Conn, s: str, op: Op, ids: Sequence[int]) -> Outcome:
    schema = sql.Identifier(s)
    match op:
        case AddJob():
            args: list[sql.Composable] = []
            params: list[Any] = []
            for name, value, cast in [
                ("identifier", op.identifier, "text"),
                ("payload", _payload(op.payload), "json"),
                ("queue_name", op.queue_name, "text"),
                ("run_at", RUN_AT[op.run_at], "timestamptz"),
                ("max_attempts", op.max_attempts, "integer"),
                ("job_key", op.job_key, "text"),
                ("priority", op.priority, "integer"),
                ("flags", _flags(op.flags), "text[]"),
                ("job_key_mode", op.job_key_mode, "text"),
            ]:
                if value is None and not op.explicit_nulls:
                    continue
                args.append(sql.SQL("{} => %s::{}").format(sql.Identifier(name), sql.SQL(cast)))
                params.append(value)
            rows = _fetch(
                conn,
                sql.SQL("select * from {}.add_job({})").format(schema, sql.SQL(", ").join(args)),
                params,
            )
            return Outcome("row", None, raw=rows)
        case StoreAddJob() if s == GW:  # the oracle: graphile-worker's add_job function
            fields = {f.name: getattr(op, f.name) for f in dataclasses.fields(op)}
            return _execute(conn, s, AddJob(**fields), ids)
        case StoreAddJob():
            job = SyncStore(s).add_spec(conn, _job_spec(op))
            return Outcome("row", None, raw=[{c: getattr(job, c) for c in JOB_COLUMNS}])
        case StoreAddJobs() if s == GW:  # the oracle: graphile-worker's add_jobs function
            return _execute(conn, s, AddJobs(op.specs), ids)
        case StoreAddJobs():
            jobs = SyncStore(s).add_jobs(conn, [_job_spec(spec) for spec in op.specs])
            return Outcome(
                "rows", None, raw=[{c: getattr(job, c) for c in JOB_COLUMNS} for job in jobs]
            )
        case AddJobs():
            spec_sql = sql.SQL(
                "row(%s::text, %s::json, %s::text, %s::timestamptz, %s::smallint, %s::text,"
                " %s::smallint, %s::text[])::{}.job_spec"
            ).format(schema)
            params = []
            for spec in op.specs:
                params += [
                    spec.identifier,
                    _payload(spec.payload),
                    spec.queue_name,
                    RUN_AT[spec.run_at],
                    spec.max_attempts,
                    spec.job_key,
                    spec.priority,
                    _flags(spec.flags),
                ]
            array = sql.SQL("array[{}]::{}.job_spec[]").format(
                sql.SQL(", ").join([spec_sql] * len(op.specs)), schema
            )
            if op.preserve_run_at == "omit":
                call = sql.SQL("{}.add_jobs({})").format(schema, array)
            else:
                call = sql.SQL("{}.add_jobs({}, %s::boolean)").format(schema, array)
                params.append(op.preserve_run_at)
            rows = _fetch(conn, sql.SQL("select * from {}").format(call), params)
            return Outcome("rows", None, raw=rows)
        case RemoveJob():
            rows = _fetch(
                conn, sql.SQL("select * from {}.remove_job(%s::text)").format(schema), [op.key]
            )
            return Outcome("row", None, raw=rows)
        case CompleteJobs():
            rows = _fetch(
                conn,
                sql.SQL("select * from {}.complete_jobs(%s::bigint[])").format(schema),
                [_job_ids(ids, op.jobs)],
            )
            return Outcome("rows", None, raw=rows)
        case PermanentlyFailJobs():
            rows = _fetch(
                conn,
                sql.SQL("select * from {}.permanently_fail_jobs(%s::bigint[], %s::text)").format(
                    schema
                ),
                [_job_ids(ids, op.jobs), op.reason],
            )
            return Outcome("rows", None, raw=rows)
        case RescheduleJobs():
            rows = _fetch(
                conn,
                sql.SQL(
                    "select * from {}.reschedule_jobs(%s::bigint[], run_at => %s::timestamptz,"
                    " priority => %s::integer, attempts => %s::integer,"
                    " max_attempts => %s::integer)"
                ).format(schema),
                [
                    _job_ids(ids, op.jobs),
                    RUN_AT[op.run_at],
                    op.priority,
                    op.attempts,
                    op.max_attempts,
                ],
            )
            return Outcome("rows", None, raw=rows)
        case ForceUnlockWorkers():
            rows = _fetch(
                conn,
                sql.SQL("select {}.force_unlock_workers(%s::text[])::text as result").format(
                    schema
                ),
                [list(op.workers)],
            )
            return Outcome("done", {"returned": rows[0]["result"]})
        case Lock():
            lockable = _fetch(
                conn,
                sql.SQL(
                    "select jobs.id from {s}._private_jobs as jobs"
                    " where jobs.is_available"
                    "   and (jobs.job_queue_id is null or exists ("
                    "     select 1 from {s}._private_job_queues as q"
                    "     where q.id = jobs.job_queue_id and q.is_available))"
                ).format(s=schema),
            )
            if not lockable:
                return Outcome("done", {"locked": None})
            lockable.sort(key=lambda row: _position(ids, row["id"]))
            job_id = lockable[op.nth_lockable % len(lockable)]["id"]
            [row] = _fetch(
                conn,
                sql.SQL(
                    "update {}._private_jobs"
                    " set locked_at = now() - %s::interval, locked_by = %s,"
                    "   attempts = attempts + 1"
                    " where id = %s"
                    " returning job_queue_id, locked_at, locked_by"
                ).format(schema),
                [op.age, op.worker, job_id],
            )
            conn.execute(
                sql.SQL(
                    "update {}._private_job_queues set locked_at = %s, locked_by = %s where id = %s"
                ).format(schema),
                [row["locked_at"], row["locked_by"], row["job_queue_id"]],
            )
            return Outcome("done", {"locked": ids.index(job_id)})
        case Fail():
            holders = _fetch(
                conn,
                sql.SQL(
                    "select id, job_queue_id, locked_by from {}._private_jobs"
                    " where locked_at is not null"
                ).format(schema),
            )
            if not holders:
                return Outcome("done", {"failed": None})
            holders.sort(key=lambda row: _position(ids, row["id"]))
            holder = holders[op.nth_locked % len(holders)]
            conn.execute(
                sql.SQL(
                    "update {}._private_jobs"
                    " set locked_at = null, locked_by = null, last_error = 'boom'"
                    " where id = %s"
                ).format(schema),
                [holder["id"]],
            )
            conn.execute(
                sql.SQL(
                    "update {}._private_job_queues set locked_at = null, locked_by = null"
                    " where id = %s and locked_by = %s"
                ).format(schema),
                [holder["job_queue_id"], holder["locked_by"]],
            )
            return Outcome("done", {"failed": ids.index(holder["id"])})
        case MakeDead():
            cur = conn.execute(
                sql.SQL("update {}._private_jobs set attempts = max_attempts where id = %s").format(
                    schema
                ),
                [_job_id(ids, op.job)],
            )
            return Outcome("done", {"made dead": cur.rowcount})
    raise AssertionError(f"unknown op {op!r}")


@dataclass
class State:
    jobs: list[dict[str, Any] | None]
    queues: list[dict[str, Any]]
    tasks: list[str]

    def comparable(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class Clock:
    """Names the instants an example writes, so rows print (and compare) readably."""

    def __init__(self, now: dt.datetime) -> None:
        self.names: dict[dt.datetime, str] = {
            now: "now",
            now - dt.timedelta(hours=5): "now-5h",
            UNTOUCHED: "untouched",
        }
        for name, instant in RUN_AT.items():
            if name is not None and instant is not None:
                self.names[instant] = name

    def name(self, value: Any) -> Any:
        """``value``'s name if it is a datetime with one, else ``value`` itself."""
        if isinstance(value, dt.datetime):
            return self.names.get(value, value)
        return value


def _position(ids: Sequence[int], job_id: int) -> int:
    return ids.index(job_id) if job_id in ids else len(ids)


def _read_names(conn: Conn, s: str) -> tuple[dict[int, str], dict[int, str]]:
    """Task identifiers and queue names by id."""
    schema = sql.Identifier(s)
    tasks = conn.execute(sql.SQL("select id, identifier from {}._private_tasks").format(schema))
    queues = conn.execute(
        sql.SQL("select id, queue_name from {}._private_job_queues").format(schema)
    )
    return dict(tasks.fetchall()), dict(queues.fetchall())


def _read_state(
    conn: Conn, s: str, ids: Sequence[int], clock: Clock, names: tuple[dict[int, str], ...]
) -> State:
    """All jobs (in the order their schema first returned them), queues and tasks."""
    schema = sql.Identifier(s)
    task_names, queue_names = names
    queues = _fetch(
        conn,
        sql.SQL(
            "select queue_name, locked_at, locked_by, is_available"
            " from {}._private_job_queues order by queue_name"
        ).format(schema),
    )
    jobs = _fetch(conn, sql.SQL("select * from {}._private_jobs").format(schema))
    jobs.sort(key=lambda row: (_position(ids, row["id"]), row["id"]))
    return State(
        jobs=[_normalise(row, ids, task_names, queue_names, clock) for row in jobs],
        queues=[{k: clock.name(v) for k, v in row.items()} for row in queues],
        tasks=sorted(task_names.values()),
    )


def _normalise(
    row: dict[str, Any],
    ids: Sequence[int],
    tasks: dict[int, str],
    queues: dict[int, str],
    clock: Clock,
) -> dict[str, Any] | None:
    """A _private_jobs row without its ids: the job by position, task and queue by name."""
    if row["id"] is None:
        return None  # a null composite
    out: dict[str, Any] = {"job": ids.index(row["id"]) if row["id"] in ids else "new"}
    out["task"] = tasks.get(row["task_id"], f"?{row['task_id']}")
    out["queue"] = None if row["job_queue_id"] is None else queues.get(row["job_queue_id"], "?")
    out.update((k, clock.name(v)) for k, v in row.items() if k not in DROPPED)
    return out


def _row_order(row: dict[str, Any] | None) -> tuple[int, int, str]:
    """Returned rows in a comparable order: known jobs by position, then new ones by content.

    Not by id: the order in which one statement assigns ids to several new rows depends on
    its plan, which can differ between the schemas (their statistics differ).
    """
    if row is None:
        return (0, 0, "")
    if row["job"] != "new":
        return (1, row["job"], "")
    return (2, 0, repr(row))


def apply(conn: Conn, s: str, op: Op, ids: list[int], clock: Clock) -> tuple[Outcome, State]:
    """Apply ``op`` to schema ``s`` in a savepoint; extend ``ids``; return outcome and state.

    ``ids`` lists the distinct job ids ``s`` returned so far, in the order they were seen.
    """
    conn.execute(
        sql.SQL("update {}._private_jobs set updated_at = %s where updated_at <> %s").format(
            sql.Identifier(s)
        ),
        [UNTOUCHED, UNTOUCHED],
    )
    try:
        with conn.transaction():
            outcome = _execute(conn, s, op, ids)
    except psycopg.Error as exc:
        outcome = Outcome("error", exc.sqlstate, message=exc.diag.message_primary)
    names = _read_names(conn, s)
    if outcome.kind in ("row", "rows"):
        pairs = [(raw, _normalise(raw, ids, *names, clock)) for raw in outcome.raw]
        pairs.sort(key=lambda pair: _row_order(pair[1]))
        normalised = [row for _, row in pairs]
        if outcome.kind == "row":
            assert len(normalised) == 1, outcome.raw
            outcome.value = normalised[0]
        else:
            outcome.value = normalised
        # a row seen for the first time is "new" in this outcome, a numbered job from now on
        ids.extend(raw["id"] for raw, row in pairs if row is not None and row["job"] == "new")
    return outcome, _read_state(conn, s, ids, clock, names)


# -- comparing the schemas ---------------------------------------------------------------------


@dataclass
class Step:
    op: Op
    gw: Outcome
    zw: Outcome


def _row(row: dict[str, Any] | None) -> str:
    if row is None:
        return "null"
    return "{" + ", ".join(f"{k}={v!r}" for k, v in row.items()) + "}"


def _show(outcome: Outcome, indent: str) -> str:
    if outcome.kind == "error":
        return f"error {outcome.value} ({outcome.message})"
    if outcome.kind == "row":
        return f"row {_row(outcome.value)}"
    if outcome.kind == "rows":
        if not outcome.value:
            return "no rows"
        return "rows" + "".join(f"\n{indent}  {_row(row)}" for row in outcome.value)
    return f"done {outcome.value!r}"


def _show_state(state: dict[str, Any]) -> str:
    lines = ["  jobs:", *(f"    {_row(job)}" for job in state["jobs"])]
    lines += ["  queues:", *(f"    {_row(queue)}" for queue in state["queues"])]
    lines.append(f"  tasks: {state['tasks']!r}")
    return "\n".join(lines)


def _report(steps: list[Step], problem: str, gw: str, zw: str) -> str:
    lines = [
        f"{GW} (graphile-worker 0.18) and {ZW} (zodworker) differ: {problem}",
        f"ops, each with its outcome on {GW} and on {ZW} (or on both when equal):",
    ]
    for i, step in enumerate(steps):
        lines.append(f"  {i}. {step.op!r}")
        indent = " " * 7
        gw_text, zw_text = _show(step.gw, indent), _show(step.zw, indent)
        if gw_text == zw_text:
            lines.append(f"{indent}both: {gw_text}")
        else:
            lines.append(f"{indent}{GW}: {gw_text}")
            lines.append(f"{indent}{ZW}: {zw_text}")
    lines += [f"--- {GW} ---", gw, f"--- {ZW} ---", zw]
    return "\n".join(lines)


def run_ops(
    conn: Conn,
    ops: Sequence[Op],
    schemas: tuple[str, str] = (GW, ZW),
    *,
    record_events: bool = False,
) -> str | None:
    """Apply ``ops`` to both schemas inside one rolled-back transaction.

    Returns None when every outcome and every intermediate state matched, else a report
    naming the first difference, the ops so far with both sides' outcomes, and both sides.
    ``record_events``: tell Hypothesis what kinds of outcome occurred (for its statistics),
    and steer it towards examples in which more operations have an effect.
    """
    left, right = schemas
    steps: list[Step] = []
    left_ids: list[int] = []
    right_ids: list[int] = []
    with conn.transaction(force_rollback=True):
        now = conn.execute("select now()").fetchone()
        assert now is not None
        clock = Clock(now[0])
        for i, op in enumerate(ops):
            gw_outcome, gw_state = apply(conn, left, op, left_ids, clock)
            zw_outcome, zw_state = apply(conn, right, op, right_ids, clock)
            steps.append(Step(op, gw_outcome, zw_outcome))
            if record_events:
                event(f"{type(op).__name__}: {_event_detail(gw_outcome)}")
            where = f"op {i}, {op!r}"
            if isinstance(op, AddJob) and gw_outcome.kind == zw_outcome.kind == "row":
                if gw_outcome.value is not None and zw_outcome.value is None:
                    return _report(
                        steps,
                        f"zodworker's add_job returned null, graphile-worker's a row ({where})",
                        _show(gw_outcome, ""),
                        _show(zw_outcome, ""),
                    )
                if gw_outcome.value is None and zw_outcome.value is not None:
                    # zodworker's add_job is meant to be the one that never returns null;
                    # without concurrency graphile-worker's should not either: recorded, and
                    # reported as a difference all the same.
                    if record_events:
                        event("graphile-worker's add_job returned null, zodworker's a row")
                    return _report(
                        steps,
                        "graphile-worker's add_job returned null, zodworker's a row"
                        f" (expected only under concurrency; {where})",
                        _show(gw_outcome, ""),
                        _show(zw_outcome, ""),
                    )
            if (gw_outcome.kind, gw_outcome.value) != (zw_outcome.kind, zw_outcome.value):
                return _report(
                    steps,
                    f"outcome of {where}",
                    _show(gw_outcome, "  "),
                    _show(zw_outcome, "  "),
                )
            gw_comparable, zw_comparable = gw_state.comparable(), zw_state.comparable()
            if gw_comparable != zw_comparable:
                return _report(
                    steps,
                    f"state after {where}",
                    _show_state(gw_comparable),
                    _show_state(zw_comparable),
                )
    if record_events:
        effective = sum(_event_detail(step.gw) not in ("no effect", "no row") for step in steps)
        target(float(effective), label="operations with an effect")
    return None


def _event_detail(outcome: Outcome) -> str:
    if outcome.kind == "error":
        return f"error {outcome.value}"
    if outcome.kind == "done":
        no_effect = outcome.value in ({"locked": None}, {"failed": None}, {"made dead": 0})
        return "no effect" if no_effect else "done"
    rows = outcome.value if outcome.kind == "rows" else [outcome.value]
    if not any(rows):
        return "no row"
    new = sum(1 for row in rows if row and row["job"] == "new")
    return f"{len(rows) - new} existing, {new} new"


# -- fixtures and tests -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    """A database with graphile-worker's schema as ``gw`` and zodworker's as ``zw``."""
    oracle = graphile_worker()  # skips the module when npm is unreachable
    name = f"zw_diff_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    url = create_database(name)
    try:
        oracle.schema_only(url, GW)

        async def _migrate() -> None:
            async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
                await migrate(conn, schema=ZW)

        asyncio.run(_migrate())
        yield url
    finally:
        drop_database(name)


@pytest.fixture(scope="module")
def diff_conn(database: str) -> Iterator[Conn]:
    with psycopg.connect(database, autocommit=True) as conn:
        yield conn


_examples_run = itertools.count(1)


def _vacuum_now_and_then(conn: Conn) -> None:
    """Every example leaves dead rows behind (it is rolled back) and every operation scans
    whole tables: without autovacuum, long runs (ZODWORKER_DIFF_EXAMPLES) slow to a crawl."""
    if next(_examples_run) % 250:
        return
    for schema in (GW, ZW):
        for table in ("_private_jobs", "_private_job_queues", "_private_tasks"):
            conn.execute(
                sql.SQL("vacuum {}.{}").format(sql.Identifier(schema), sql.Identifier(table))
            )


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=False,
    database=None,
)
@given(ops=st.lists(ops, min_size=1, max_size=12))
# Paths worth running every time, whatever Hypothesis draws:
@example(  # preserve_run_at keeps run_at only while the job has not been attempted
    ops=[
        AddJob("a", run_at="past", job_key="k1"),
        AddJob("a", run_at="future", job_key="k1", job_key_mode="preserve_run_at"),
        Lock(),
        Fail(),
        AddJob("b", run_at="future", job_key="k1", job_key_mode="preserve_run_at"),
        AddJobs((Spec("a", run_at="past", job_key="k1"),), preserve_run_at=True),
    ]
)
@example(  # batch jobs: array payloads under one key accumulate
    ops=[
        AddJob("a", payload=[1], job_key="k1"),
        AddJob("a", payload=[{"n": 2}], job_key="k1"),
        AddJobs((Spec("a", payload=[3], job_key="k1"), Spec("a", payload=[4], job_key="k2"))),
        AddJob("a", payload={"x": 1}, job_key="k1"),
        AddJob("a", payload=[5], job_key="k1"),
        AddJob("a", payload=JSON_NULL, job_key="k2"),
    ]
)
@example(  # running keyed jobs in a queue: replaced, removed, failed, unlocked, completed
    ops=[
        AddJob("a", queue_name="q1", job_key="k1", flags=("a", "b")),
        Lock(worker="w2"),
        AddJob("b", queue_name="q1", job_key="k1", max_attempts=2, priority=-1),
        Lock(),
        RemoveJob("k1"),
        AddJob("c", job_key="k2"),
        Lock(),
        RemoveJob("k2"),
        PermanentlyFailJobs((0, 1, 2)),
        CompleteJobs((0, 1, 2)),
        ForceUnlockWorkers(("w2",)),
        Fail(),
    ]
)
@example(  # failing, rescheduling and completing jobs nobody holds
    ops=[
        AddJobs((Spec("a", queue_name="q1"), Spec("b", queue_name="q2"), Spec("c"))),
        PermanentlyFailJobs((0, -1)),
        RescheduleJobs((0, 1), run_at="past", attempts=1),
        RescheduleJobs((1, 2), max_attempts=1, priority=-1),
        CompleteJobs((2, 2)),
    ]
)
@example(  # stale locks (5 hours) count as no lock
    ops=[
        AddJob("a", queue_name="q2", job_key="k1"),
        Lock(age="5 hours"),
        RemoveJob("k1"),
        AddJob("a", job_key="k2"),
        Lock(age="5 hours"),
        PermanentlyFailJobs((1,), reason="why"),
        RescheduleJobs((1,), run_at="future", priority=5, attempts=0, max_attempts=2),
        CompleteJobs((1,)),
    ]
)
@example(  # unsafe_dedupe keeps the first job whatever its state; odd modes and duplicates
    ops=[
        AddJob("a", job_key="k1"),
        MakeDead(0),
        AddJob("b", payload=[1], job_key="k1", job_key_mode="unsafe_dedupe"),
        AddJob("a", job_key="k1", job_key_mode="bogus"),
        AddJob("a", job_key_mode="bogus"),
        AddJob("c", job_key="k1", explicit_nulls=True),
        AddJobs((Spec("a", job_key="k3"), Spec("b", job_key="k3"))),
        AddJobs(()),
    ]
)
@example(  # the store's lean batch insert (known tasks and queues, no keys) and its fallback
    ops=[
        StoreAddJobs((Spec("a", queue_name="q1"), Spec("b"))),
        StoreAddJobs(
            (
                Spec("b", payload=[1], run_at="past", max_attempts=2, priority=-1, flags=("a",)),
                Spec("a", queue_name="q1", payload={"x": 1}, run_at="future", flags=()),
                Spec("a"),
            )
        ),
        StoreAddJobs((Spec("a", queue_name="q2"), Spec("b"))),
        StoreAddJobs((Spec("a", job_key="k1"), Spec("b"))),
    ]
)
def test_zodworker_sql_api_behaves_like_graphile_workers(diff_conn: Conn, ops: list[Op]) -> None:
    _vacuum_now_and_then(diff_conn)
    report = run_ops(diff_conn, ops, record_events=True)
    assert report is None, report


def test_the_comparison_sees_a_behaviour_change(database: str) -> None:
    """Self-check: a zw whose remove_job never deletes is told apart from graphile-worker."""
    ops: list[Op] = [AddJob("a", job_key="k1"), RemoveJob("k1"), AddJob("b")]
    with psycopg.connect(database, autocommit=True) as conn:
        assert run_ops(conn, ops) is None
        with conn.transaction(force_rollback=True):
            conn.execute(
                "create or replace function zw.remove_job(job_key text) returns zw._private_jobs"
                " language sql strict"
                " as $$ select * from zw._private_jobs where key = job_key $$"
            )
            report = run_ops(conn, ops)
    assert report is not None
    assert report.startswith("gw (graphile-worker 0.18) and zw (zodworker) differ: state after")
    assert "RemoveJob(key='k1')" in report
