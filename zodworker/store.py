"""The store: every call zodworker makes to PostgreSQL for adding and administering jobs.

Each method takes a *target*: a psycopg :class:`~psycopg.AsyncConnection` or a psycopg_pool
:class:`~psycopg_pool.AsyncConnectionPool`.

* With a connection, the statements run on it and nothing is committed: inside the
  caller's transaction the job (and its NOTIFY) exist only if the caller commits.
  On an autocommit connection each call commits by itself.
* With a pool, a connection is borrowed for the call and committed when it returns.

Input is validated before any SQL is sent (:class:`~zodworker.errors.JobSpecError`), so a
bad call never aborts the caller's transaction. Database errors are translated into the
package's errors in one place, :func:`translate_errors`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from datetime import datetime
from typing import Any, Final, TypeAlias

import msgspec
import psycopg
from psycopg.rows import RowMaker, tuple_row
from psycopg.types.json import set_json_loads
from psycopg_pool import AsyncConnectionPool

from . import sqlfiles
from .errors import DatabaseError, JobKeyModeError, JobSpecError
from .job import (
    DEFAULT_SCHEMA,
    Job,
    JobKeyMode,
    JobSpec,
    check_key_mode,
    check_spec,
    encode_payload,
)

__all__ = ["AsyncTarget", "Store", "translate_errors"]

AsyncTarget: TypeAlias = "psycopg.AsyncConnection[Any] | AsyncConnectionPool[Any]"

# Which argument a failed CHECK constraint is about, by constraint name.
_CONSTRAINT_FIELDS: Final = {
    "jobs_key_check": "job_key",
    "jobs_max_attempts_check": "max_attempts",
    "tasks_identifier_check": "identifier",
    "job_queues_queue_name_check": "queue_name",
}
# undefined schema / table / function: the schema was probably never migrated
_NOT_INSTALLED: Final = frozenset({"3F000", "42P01", "42883"})
# An add that loses a race with a worker locking the keyed job is retried this many times
# on schemas whose add_job/add_jobs can return nothing in that case (installed by
# graphile-worker); our own functions retry inside the database and never need it.
_ADD_RETRIES: Final = 10

_spec_encoder = msgspec.json.Encoder()
_json_loads = msgspec.json.decode


def _job_row(cursor: Any) -> RowMaker[Job]:
    """Row factory for the store's queries: the columns of _private_jobs in table order,
    then the task identifier and the queue name (see sql/queries/store.sql)."""

    def make(v: Sequence[Any]) -> Job:
        return Job(
            id=v[0],
            job_queue_id=v[1],
            task_id=v[2],
            payload=v[3],
            priority=v[4],
            run_at=v[5],
            attempts=v[6],
            max_attempts=v[7],
            last_error=v[8],
            created_at=v[9],
            updated_at=v[10],
            key=v[11],
            locked_at=v[12],
            locked_by=v[13],
            revision=v[14],
            flags=v[15],
            is_available=v[16],
            task_identifier=v[17] or "",
            queue_name=v[18],
        )

    return make


@contextmanager
def translate_errors() -> Iterator[None]:
    """Re-raise psycopg errors as zodworker errors, keeping the original as ``__cause__``."""
    try:
        yield
    except psycopg.Error as exc:
        sqlstate = exc.sqlstate
        diag = exc.diag
        if sqlstate == "GWBKM":
            raise JobKeyModeError(str(exc), sqlstate) from exc
        if sqlstate == "23514" and diag.constraint_name in _CONSTRAINT_FIELDS:
            field = _CONSTRAINT_FIELDS[diag.constraint_name]
            raise JobSpecError(field, f"rejected by the database: {diag.message_primary}") from exc
        if sqlstate == "22003":  # numeric value out of range (smallint casts)
            raise JobSpecError(
                "priority/max_attempts", f"out of range: {diag.message_primary}"
            ) from exc
        message = str(exc).strip() or type(exc).__name__
        if sqlstate in _NOT_INSTALLED:
            message += (
                " (is the schema installed? run `zodworker migrate`, or `await migrate(conn)` /"
                " `await client.initialize()` first)"
            )
        raise DatabaseError(message, sqlstate) from exc


@asynccontextmanager
async def _connection(target: AsyncTarget) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    if isinstance(target, AsyncConnectionPool):
        async with target.connection() as conn:
            yield conn
    else:
        yield target


def _isoformat(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


class Store:
    """Job operations on one graphile-worker schema (default ``graphile_worker``).

    The schema name is only ever sent as a quoted identifier.
    """

    __slots__ = ("_schema",)

    def __init__(self, schema: str = DEFAULT_SCHEMA) -> None:
        if not isinstance(schema, str) or not schema:
            raise JobSpecError("schema", "must be a non-empty string")
        self._schema = schema

    @property
    def schema(self) -> str:
        """The schema this store works on."""
        return self._schema

    def _q(self, name: str) -> bytes:
        return sqlfiles.query(name, self._schema)

    async def _rows(
        self, target: AsyncTarget, name: str, params: Sequence[object], *, bulk: bool = False
    ) -> list[Job]:
        """Run a job-returning query. ``bulk``: many rows expected, so decode JSON with
        msgspec (registering its loader costs ~40 us per cursor, more than it saves on one
        small row; psycopg's default loader handles single rows)."""
        query = self._q(name)
        async with (
            _connection(target) as conn,
            conn.cursor(row_factory=_job_row, binary=True) as cur,
        ):
            if bulk:
                set_json_loads(_json_loads, cur)  # this cursor only; the caller's is untouched
            with translate_errors():
                await cur.execute(query, params)
                jobs = await cur.fetchall()
                unresolved = [
                    job
                    for job in jobs
                    if not job.task_identifier
                    or (job.job_queue_id is not None and job.queue_name is None)
                ]
                if unresolved:
                    await self._resolve_names(conn, unresolved)
        return jobs

    async def _resolve_names(self, conn: psycopg.AsyncConnection[Any], jobs: list[Job]) -> None:
        """Fill in names created by the statement that returned ``jobs`` (see store.sql)."""
        async with conn.cursor(row_factory=tuple_row) as cur:
            await cur.execute(
                self._q("resolve_names"),
                ([job.task_id for job in jobs], [job.job_queue_id for job in jobs]),
            )
            row = await cur.fetchone()
        assert row is not None
        for job, identifier, queue_name in zip(jobs, row[0], row[1], strict=True):
            job.task_identifier = identifier
            job.queue_name = queue_name

    async def add_job(
        self,
        target: AsyncTarget,
        identifier: str,
        payload: Any = None,
        *,
        queue_name: str | None = None,
        run_at: datetime | None = None,
        max_attempts: int | None = None,
        job_key: str | None = None,
        job_key_mode: JobKeyMode | None = None,
        priority: int | None = None,
        flags: Sequence[str] | None = None,
    ) -> Job:
        """Add one job and return it (for a keyed job: the row that now holds the key).

        ``job_key_mode`` (default ``"replace"``) says what happens when a job with
        ``job_key`` already exists; see :data:`~zodworker.job.JobKeyMode`.
        """
        spec = JobSpec(
            identifier=identifier,
            payload=payload,
            queue_name=queue_name,
            run_at=run_at,
            max_attempts=max_attempts,
            job_key=job_key,
            priority=priority,
            flags=flags,
        )
        return await self.add_spec(target, spec, job_key_mode)

    async def add_spec(
        self, target: AsyncTarget, spec: JobSpec, job_key_mode: JobKeyMode | None = None
    ) -> Job:
        """:meth:`add_job` for a ready-made :class:`JobSpec`."""
        params = add_job_params(spec, job_key_mode)
        for _ in range(_ADD_RETRIES):
            jobs = await self._rows(target, "add_job", params)
            if jobs:
                return jobs[0]
        raise DatabaseError(
            f"add_job for key {spec.job_key!r} kept racing with workers locking that job; "
            "nothing was added"
        )

    async def add_jobs(
        self,
        target: AsyncTarget,
        specs: Sequence[JobSpec],
        *,
        job_key_preserve_run_at: bool = False,
    ) -> list[Job]:
        """Add many jobs in one statement (one NOTIFY); return one row per spec.

        Key handling is that of ``job_key_mode="replace"``, or ``"preserve_run_at"`` when
        ``job_key_preserve_run_at`` is true (``unsafe_dedupe`` is single-job only).
        """
        encoded = add_jobs_payload(specs)
        if encoded is None:
            return []
        preserve = bool(job_key_preserve_run_at)
        jobs = await self._rows(target, "add_jobs", (encoded, preserve), bulk=True)
        for _ in range(_ADD_RETRIES):
            if len(jobs) >= len(specs):
                return jobs
            got = {job.key for job in jobs}
            missing = [
                spec for spec in specs if spec.job_key is not None and spec.job_key not in got
            ]
            if not missing:
                return jobs
            retry = (_spec_encoder.encode(missing).decode("utf-8"), preserve)
            jobs += await self._rows(target, "add_jobs", retry, bulk=True)
        raise DatabaseError("add_jobs kept racing with workers locking keyed jobs; retry the call")

    async def remove_job(self, target: AsyncTarget, job_key: str) -> Job | None:
        """Remove the job with ``job_key``; return it, or None when no job has that key.

        A job no live worker holds is deleted. A running one loses its key and its remaining
        attempts: it finishes, but never runs again.
        """
        check_spec(JobSpec(identifier="-", job_key=job_key))
        if job_key is None:
            raise JobSpecError("job_key", "is required")
        jobs = await self._rows(target, "remove_job", (job_key,))
        return jobs[0] if jobs else None

    async def complete_jobs(self, target: AsyncTarget, ids: Sequence[int]) -> list[Job]:
        """Delete the given jobs (skipping any a live worker holds); return the deleted rows."""
        return await self._rows(target, "complete_jobs", (_ids(ids),), bulk=True)

    async def permanently_fail_jobs(
        self, target: AsyncTarget, ids: Sequence[int], reason: str | None = None
    ) -> list[Job]:
        """Mark the given jobs failed for good with ``reason``; return the changed rows."""
        if reason is not None and not isinstance(reason, str):
            raise JobSpecError("reason", "must be a string or None")
        return await self._rows(target, "permanently_fail_jobs", (_ids(ids), reason), bulk=True)

    async def reschedule_jobs(
        self,
        target: AsyncTarget,
        ids: Sequence[int],
        *,
        run_at: datetime | None = None,
        priority: int | None = None,
        attempts: int | None = None,
        max_attempts: int | None = None,
    ) -> list[Job]:
        """Change run_at / priority / attempts / max_attempts of the given jobs.

        ``None`` leaves a column as it is. Jobs a live worker holds are skipped.
        """
        check_spec(
            JobSpec(identifier="-", run_at=run_at, priority=priority, max_attempts=max_attempts)
        )
        if attempts is not None and (isinstance(attempts, bool) or not 0 <= attempts <= 32767):
            raise JobSpecError("attempts", "must be an integer between 0 and 32767")
        params = (_ids(ids), _isoformat(run_at), priority, attempts, max_attempts)
        return await self._rows(target, "reschedule_jobs", params, bulk=True)

    async def force_unlock_workers(self, target: AsyncTarget, worker_ids: Sequence[str]) -> None:
        """Release every job and queue lock held by the given worker ids."""
        if isinstance(worker_ids, str) or not all(isinstance(w, str) for w in worker_ids):
            raise JobSpecError("worker_ids", "must be a list of worker id strings")
        query = self._q("force_unlock_workers")
        async with _connection(target) as conn:
            with translate_errors():
                await conn.execute(query, (list(worker_ids),))

    async def get_job(self, target: AsyncTarget, job_id: int) -> Job | None:
        """The job with ``job_id``, or None."""
        jobs = await self._rows(target, "get_job", (job_id,))
        return jobs[0] if jobs else None


def add_job_params(spec: JobSpec, job_key_mode: JobKeyMode | None) -> tuple[object, ...]:
    """Validate one job and return the add_job query's parameters."""
    check_spec(spec)
    check_key_mode(job_key_mode)
    payload = spec.payload
    return (
        spec.identifier,
        encode_payload({} if payload is None else payload),
        spec.queue_name,
        _isoformat(spec.run_at),
        spec.max_attempts,
        spec.job_key,
        spec.priority,
        None if spec.flags is None else list(spec.flags),
        job_key_mode or "replace",
    )


def add_jobs_payload(specs: Sequence[JobSpec]) -> str | None:
    """Validate a batch and return it as the add_jobs query's JSON (None when empty)."""
    if isinstance(specs, JobSpec) or not isinstance(specs, Sequence):
        raise JobSpecError("specs", "must be a sequence of JobSpec")
    keys: set[str] = set()
    for index, spec in enumerate(specs):
        if not isinstance(spec, JobSpec):
            raise JobSpecError(f"specs[{index}]", f"must be a JobSpec, not {type(spec).__name__}")
        check_spec(spec, f"specs[{index}].")
        if spec.job_key is not None:
            if spec.job_key in keys:
                raise JobSpecError(
                    f"specs[{index}].job_key",
                    f"{spec.job_key!r} appears twice in one batch; add them in separate calls",
                )
            keys.add(spec.job_key)
    if not specs:
        return None
    try:
        return _spec_encoder.encode(specs).decode("utf-8")
    except (TypeError, ValueError, OverflowError, msgspec.EncodeError):
        for index, spec in enumerate(specs):  # find the culprit for the message
            encode_payload(spec.payload, f"specs[{index}].payload")
        raise


def _ids(ids: Sequence[int]) -> list[int]:
    if isinstance(ids, (str, bytes)) or not all(
        isinstance(i, int) and not isinstance(i, bool) for i in ids
    ):
        raise JobSpecError("ids", "must be a list of integer job ids")
    return list(ids)
