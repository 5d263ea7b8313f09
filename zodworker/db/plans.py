"""What the producer store does, computed once for its async and its sync face.

Every store operation is a *plan*: a generator that validates its input (raising
:class:`~zodworker.errors.JobSpecError` before any SQL is sent), yields the statements to run
as :class:`Call` objects, receives each one's rows, and returns the result. Retries (a keyed
add that raced with a worker locking the job) and name resolution live here, once.
:class:`~zodworker.db.store.Store` and :class:`~zodworker.db.store.SyncStore` only execute
plans, one with ``await`` and one without, so they cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal, TypeAlias, TypeVar

import msgspec

from ..errors import DatabaseError, JobSpecError, PayloadEncodeError
from ..job import (
    Job,
    JobKeyMode,
    JobSpec,
    check_key_mode,
    check_spec,
    encode_checked,
    encode_payload,
)
from .rows import LazyRows, Params

__all__ = [
    "ADD_RETRIES",
    "Call",
    "Plan",
    "add_job_params",
    "add_jobs_payload",
    "plan_add_job",
    "plan_add_jobs",
    "plan_complete_jobs",
    "plan_force_unlock_workers",
    "plan_get_job",
    "plan_permanently_fail_jobs",
    "plan_remove_job",
    "plan_reschedule_jobs",
]

R = TypeVar("R")

ADD_RETRIES: Final = 10
"""How often an add that lost a race with a worker locking the keyed job is retried. Only
schemas whose add_job/add_jobs were installed by graphile-worker return nothing in that
case; our own functions retry inside the database and never need it."""

_spec_encoder = msgspec.json.Encoder()


@dataclass(frozen=True, slots=True)
class Call:
    """One statement of a plan: the named query, its parameters and what comes back."""

    query: str
    params: Params
    rows: Literal["jobs", "job_states", "tuples", "none"] = "jobs"
    bulk: bool = False
    """Many rows expected: decode JSON with msgspec on this cursor (registering the loader
    costs ~40 us per cursor, more than it saves on one small row); jobs come back as
    :class:`~zodworker.db.rows.LazyRows`, each decoded when read."""


Plan: TypeAlias = Generator[Call, Sequence[Any], R]

# JOB_COLUMNS positions of what name resolution reads
_QUEUE_ID, _TASK_IDENTIFIER, _QUEUE_NAME = 1, 17, 18


def _unresolved(jobs: Sequence[Job]) -> list[Job]:
    """The jobs whose task identifier (or named queue's name) the statement left null;
    lazy rows are checked without decoding the others."""
    if isinstance(jobs, LazyRows):
        rows = zip(
            jobs.nulls(_TASK_IDENTIFIER),
            jobs.nulls(_QUEUE_ID),
            jobs.nulls(_QUEUE_NAME),
            strict=True,
        )
        return [
            jobs[i]
            for i, (no_task, no_queue, no_name) in enumerate(rows)
            if no_task or (no_name and not no_queue)
        ]
    return [
        job
        for job in jobs
        if not job.task_identifier or (job.job_queue_id is not None and job.queue_name is None)
    ]


def _jobs(call: Call) -> Plan[Sequence[Job]]:
    """Run a job-returning call; resolve names created by the same statement.

    A statement's snapshot predates task and queue rows that add_job(s) creates during it,
    so those names come back null; they are looked up in a second statement (which happens
    only the first time a name is used).
    """
    jobs: Sequence[Job] = yield call
    unresolved = _unresolved(jobs)
    if unresolved:
        params = ([job.task_id for job in unresolved], [job.job_queue_id for job in unresolved])
        [(identifiers, queue_names)] = yield Call("resolve_names", params, rows="tuples")
        for job, identifier, queue_name in zip(unresolved, identifiers, queue_names, strict=True):
            job.task_identifier = identifier
            job.queue_name = queue_name
    return jobs


def _isoformat(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


AddJobParams: TypeAlias = tuple[
    str, str, str | None, str | None, int | None, str | None, int | None, list[str] | None, str
]
"""add_job's parameters: identifier, payload (JSON text), queue name, run_at (ISO text),
max_attempts, job key, priority, flags, job key mode."""


def add_job_params(spec: JobSpec, job_key_mode: JobKeyMode | None) -> AddJobParams:
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
        try:
            check_spec(spec)
        except JobSpecError:  # again, naming the spec (the prefix costs ~0.2 us a spec)
            check_spec(spec, f"specs[{index}].")
            raise
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
        return encode_checked(specs, [spec.payload for spec in specs], "specs").decode("utf-8")
    except PayloadEncodeError:
        for index, spec in enumerate(specs):  # find the culprit for the message
            encode_payload(spec.payload, f"specs[{index}].payload")
        raise


def plan_add_job(spec: JobSpec, job_key_mode: JobKeyMode | None) -> Plan[Job]:
    """Add one job; return it (for a keyed job: the row that now holds the key). A job
    without a key whose task (and queue) exist is one lean insert (``add_job_lean``, the
    same row and NOTIFY); the rest goes through the schema's add_job."""
    params = add_job_params(spec, job_key_mode)
    if spec.job_key is None:
        identifier, payload, queue, run_at, max_attempts, _, priority, flags, _ = params
        lean = (identifier, queue, payload, run_at, max_attempts, priority, flags, queue)
        added: Sequence[Job] = yield Call("add_job_lean", lean)
        if added:
            # the row without what the store sent and matched: the task and queue names,
            # and the payload, which a json column keeps as the text it was given
            job = added[0]
            job.task_identifier, job.queue_name = identifier, queue
            job.payload = msgspec.json.decode(payload)
            return job
    for _ in range(ADD_RETRIES):
        jobs = yield from _jobs(Call("add_job", params))
        if jobs:
            return jobs[0]
    raise DatabaseError(
        f"add_job for key {spec.job_key!r} kept racing with workers locking that job; "
        "nothing was added"
    )


def plan_add_jobs(specs: Sequence[JobSpec], preserve_run_at: bool) -> Plan[Sequence[Job]]:
    """Add many jobs in one statement; return one row per spec. A batch without keys whose
    tasks (and queues) exist is one lean insert (``add_jobs_lean``, the same rows and
    NOTIFY); the rest goes through the schema's add_jobs. Keyed specs whose job a worker
    locked during the statement are added again until every spec has its row."""
    encoded = add_jobs_payload(specs)
    if encoded is None:
        return []
    if all(spec.job_key is None for spec in specs):
        added: Sequence[Job] = yield Call("add_jobs_lean", (encoded,), bulk=True)
        if added:
            return _named_in_order(added, specs)
    preserve = bool(preserve_run_at)
    jobs = yield from _jobs(Call("add_jobs", (encoded, preserve), bulk=True))
    for _ in range(ADD_RETRIES):
        if len(jobs) >= len(specs):
            return jobs
        got = {job.key for job in jobs}
        missing = [spec for spec in specs if spec.job_key is not None and spec.job_key not in got]
        if not missing:
            return jobs
        retry = (_spec_encoder.encode(missing).decode("utf-8"), preserve)
        more = yield from _jobs(Call("add_jobs", retry, bulk=True))
        jobs = [*jobs, *more]
    raise DatabaseError("add_jobs kept racing with workers locking keyed jobs; retry the call")


def _named_in_order(rows: Sequence[Job], specs: Sequence[JobSpec]) -> Sequence[Job]:
    """The lean batch's rows in the specs' order (its ids follow them), named after their
    specs: every task and queue existed, so a row's names are its spec's."""

    def name(position: int, job: Job) -> None:
        spec = specs[position]
        job.task_identifier, job.queue_name = spec.identifier, spec.queue_name

    if isinstance(rows, LazyRows):  # what the runner hands back for bulk job statements
        return rows.in_id_order(name)
    ordered = sorted(rows, key=lambda job: job.id)
    for position, job in enumerate(ordered):
        name(position, job)
    return ordered


def plan_remove_job(job_key: str) -> Plan[Job | None]:
    """Remove the job with ``job_key``; return it, or None when no job has that key."""
    if job_key is None:
        raise JobSpecError("job_key", "is required")
    check_spec(JobSpec(identifier="-", job_key=job_key))
    jobs = yield from _jobs(Call("remove_job", (job_key,)))
    return jobs[0] if jobs else None


def plan_complete_jobs(ids: Sequence[int]) -> Plan[Sequence[Job]]:
    """Delete the given jobs (skipping any a live worker holds); return the deleted rows."""
    return (yield from _jobs(Call("complete_jobs", (_ids(ids),), bulk=True)))


def plan_permanently_fail_jobs(ids: Sequence[int], reason: str | None) -> Plan[Sequence[Job]]:
    """Mark the given jobs failed for good with ``reason``; return the changed rows."""
    if reason is not None and not isinstance(reason, str):
        raise JobSpecError("reason", "must be a string or None")
    return (yield from _jobs(Call("permanently_fail_jobs", (_ids(ids), reason), bulk=True)))


def plan_reschedule_jobs(
    ids: Sequence[int],
    run_at: datetime | None,
    priority: int | None,
    attempts: int | None,
    max_attempts: int | None,
) -> Plan[Sequence[Job]]:
    """Change run_at / priority / attempts / max_attempts (None: leave as is)."""
    check_spec(JobSpec(identifier="-", run_at=run_at, priority=priority, max_attempts=max_attempts))
    if attempts is not None and (isinstance(attempts, bool) or not 0 <= attempts <= 32767):
        raise JobSpecError("attempts", "must be an integer between 0 and 32767")
    params = (_ids(ids), _isoformat(run_at), priority, attempts, max_attempts)
    return (yield from _jobs(Call("reschedule_jobs", params, bulk=True)))


def plan_force_unlock_workers(worker_ids: Sequence[str]) -> Plan[None]:
    """Release every job and queue lock held by the given worker ids."""
    if isinstance(worker_ids, str) or not all(isinstance(w, str) for w in worker_ids):
        raise JobSpecError("worker_ids", "must be a list of worker id strings")
    yield Call("force_unlock_workers", (list(worker_ids),), rows="none")


def plan_get_job(job_id: int) -> Plan[Job | None]:
    """The job with ``job_id``, or None."""
    if isinstance(job_id, bool) or not isinstance(job_id, int):
        raise JobSpecError("job_id", f"must be an integer job id, not {type(job_id).__name__}")
    jobs = yield from _jobs(Call("get_job", (job_id,)))
    return jobs[0] if jobs else None


def _ids(ids: Sequence[int]) -> list[int]:
    if isinstance(ids, (str, bytes)) or not all(
        isinstance(i, int) and not isinstance(i, bool) for i in ids
    ):
        raise JobSpecError("ids", "must be a list of integer job ids")
    return list(ids)
