"""What each admin operation does, computed once for the async and the sync admin API.

Like the store's plans (:mod:`zodworker.db.plans`): validate before any SQL is sent, yield
the statements, return plain values. Listing is keyset-paginated by job id; counts are exact
up to a bound and estimated above it (from the planner's row estimate and a sample of the
table's pages), and say which; bulk operations act on whatever the same filters select and
skip jobs a live worker holds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final, Literal, get_args

from ..errors import JobSpecError
from ..job import MAX_JOB_KEY_LENGTH, MAX_QUEUE_NAME_LENGTH, Job
from .plans import Call, Plan

if TYPE_CHECKING:
    from .limit_plans import LimitInfo

__all__ = [
    "DEFAULT_BOUND",
    "JOB_STATES",
    "Cancelled",
    "Count",
    "Deleted",
    "JobFilter",
    "JobPage",
    "JobState",
    "JobView",
    "KnownCrontab",
    "QueueInfo",
    "Stats",
    "StatsRow",
    "WorkerInfo",
    "plan_bulk",
    "plan_cancel_job",
    "plan_count_jobs",
    "plan_deleted_total",
    "plan_known_crontabs",
    "plan_list_jobs",
    "plan_list_queues",
    "plan_list_workers",
    "plan_pause_queue",
    "plan_resume_queue",
    "plan_stats",
]

JobState = Literal["ready", "scheduled", "running", "retrying", "failed"]
"""A job's state, derived from its columns: ``running`` (locked by a worker), ``failed``
(out of attempts: failed for good or cancelled), ``retrying`` (failed before, attempts left),
``scheduled`` (never tried, due later), ``ready`` (never tried, due now)."""
JOB_STATES: Final = frozenset(get_args(JobState))
DEFAULT_BOUND: Final = 100_000
"""Counts are exact up to this many jobs, estimates above."""
_SAMPLE_ROWS: Final = 50_000  # the estimate reads about this many rows


@dataclass(frozen=True, slots=True)
class JobFilter:
    """Which jobs an admin operation selects; every field is optional (``None``: any)."""

    task: str | None = None
    queue: str | None = None
    state: JobState | None = None
    key: str | None = None
    flag: str | None = None
    ids: Sequence[int] | None = None
    text: str | None = None
    """Found anywhere in the payload's JSON text, ignoring case (a scan: narrow it with
    the other filters on a big table)."""

    def params(self) -> dict[str, Any]:
        """The validated query parameters (``JobSpecError`` naming the field otherwise)."""
        for name, limit in (("task", 128), ("queue", MAX_QUEUE_NAME_LENGTH)):
            _check_text(name, getattr(self, name), limit)
        _check_text("key", self.key, MAX_JOB_KEY_LENGTH)
        _check_text("flag", self.flag, 2**20)
        _check_text("text", self.text, 1000)
        if self.state is not None and self.state not in JOB_STATES:
            expected = ", ".join(sorted(JOB_STATES))
            raise JobSpecError("state", f"is {self.state!r}; expected one of {expected}")
        ids = None if self.ids is None else list(self.ids)
        if ids is not None and not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
            raise JobSpecError("ids", "must be a list of integer job ids")
        return {
            "task": self.task,
            "queue": self.queue,
            "state": self.state,
            "key": self.key,
            "flag": self.flag,
            "text": self.text,
            "ids": ids,
        }


def _check_text(name: str, value: object, limit: int) -> None:
    if value is None:
        return
    if not isinstance(value, str) or not value or len(value) > limit or "\x00" in value:
        raise JobSpecError(name, f"must be a non-empty string of at most {limit} characters")


@dataclass(frozen=True, slots=True)
class JobView:
    """A job and its state."""

    job: Job
    state: JobState


@dataclass(frozen=True, slots=True)
class JobPage:
    """One page of jobs; ``after`` is the cursor for the next page (None: the last page)."""

    jobs: list[JobView]
    after: int | None


@dataclass(frozen=True, slots=True)
class Count:
    """A number of jobs, exact or estimated (then rounded, and ``exact`` is False)."""

    value: int
    exact: bool

    def __str__(self) -> str:
        return str(self.value) if self.exact else f"~{self.value}"


@dataclass(frozen=True, slots=True)
class StatsRow:
    """How many jobs of one task, queue and state there are."""

    task: str | None
    queue: str | None
    state: JobState
    count: Count


@dataclass(frozen=True, slots=True)
class Stats:
    """Jobs by task, queue and state, and when the oldest ready job of each queue was due."""

    rows: list[StatsRow]
    exact: bool
    oldest_ready: dict[str | None, datetime] = field(default_factory=dict)
    """Per named queue (None: jobs without one), the due time of its oldest ready job."""
    limits: list[LimitInfo] = field(default_factory=list)
    """Every limit (:mod:`zodworker.limits`): jobs running under it and waiting."""


@dataclass(frozen=True, slots=True)
class QueueInfo:
    """A named queue: its depth, who holds it and whether it is paused."""

    name: str
    depth: Count
    locked_by: str | None
    locked_at: datetime | None
    paused: bool | None
    """None: unknown (the schema has no zodworker tables, so nothing can pause a queue)."""


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """A live zodworker pool (its lease) and the jobs it holds now."""

    pool_id: str
    hostname: str | None
    pid: int | None
    started_at: datetime
    last_seen: datetime
    lease_expires_at: datetime
    running: int
    completed: int = 0
    """Jobs it completed since it started (as of its last heartbeat)."""
    failed: int = 0
    """Attempts that failed since it started, retried or not (as of its last heartbeat)."""


def _limit(value: object, name: str, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high:
        raise JobSpecError(name, f"is {value!r}; expected an integer from 1 to {high}")
    return value


def plan_list_jobs(where: JobFilter, limit: int, after: int | None, newest: bool) -> Plan[JobPage]:
    """One page of the matching jobs, newest (or oldest) first, after the cursor."""
    params = {**where.params(), "limit": _limit(limit, "limit", 10_000), "after": after}
    if after is not None and (isinstance(after, bool) or not isinstance(after, int)):
        raise JobSpecError("after", "must be a job id (an integer) or None")
    name = "admin_list_jobs_newest" if newest else "admin_list_jobs_oldest"
    rows: Sequence[tuple[Job, Any]] = yield Call(name, params, rows="job_states", bulk=True)
    views = [JobView(job, state) for job, state in rows]
    cursor = views[-1].job.id if len(views) == limit else None
    return JobPage(views, cursor)


def plan_count_jobs(where: JobFilter, bound: int = DEFAULT_BOUND) -> Plan[Count]:
    """How many jobs match, exactly up to ``bound`` (above it: at least ``bound + 1``)."""
    params = {**where.params(), "bound": _limit(bound, "bound", 10**9)}
    [(counted,)] = yield Call("admin_count_jobs", params, rows="tuples")
    return Count(int(counted), exact=counted <= bound)


def plan_bulk(
    operation: Literal["retry", "delete", "reschedule", "cancel"],
    where: JobFilter,
    run_at: datetime | None = None,
) -> Plan[list[int]]:
    """Retry, delete or reschedule the matching jobs (skipping those a live worker holds),
    or cancel them (running ones too); return the ids changed."""
    params: dict[str, Any] = where.params()
    if operation == "reschedule":
        if not isinstance(run_at, datetime) or run_at.utcoffset() is None:
            raise JobSpecError("run_at", "must be a timezone-aware datetime")
        params["run_at"] = run_at.isoformat()
    rows = yield Call(f"admin_{operation}_jobs", params, rows="tuples")
    return [row[0] for row in rows]


def plan_stats(schema: str, bound: int = DEFAULT_BOUND) -> Plan[Stats]:
    """Jobs by task, queue and state: exact when the table holds at most ``bound`` rows (by
    the planner's estimate), else from a sample of its pages; plus the oldest ready jobs."""
    [(estimate,)] = yield Call("admin_table_estimate", {"schema": schema}, rows="tuples")
    exact = estimate <= bound
    if exact:
        counted = yield Call("admin_stats_exact", {}, rows="tuples")
        scale = 1.0
    else:
        percent = max(0.01, min(100.0, 100.0 * _SAMPLE_ROWS / estimate))
        counted = yield Call("admin_stats_sample", {"percent": percent}, rows="tuples")
        scale = 100.0 / percent
    rows = [
        StatsRow(task, queue, state, Count(round(count * scale), exact))
        for task, queue, state, count in counted
    ]
    oldest = yield Call("admin_oldest_ready", {}, rows="tuples")
    return Stats(sorted(rows, key=_stats_order), exact, dict(oldest))


def _stats_order(row: StatsRow) -> tuple[str, str, str]:
    return (row.task or "", row.queue or "", row.state)


def plan_list_queues(schema: str, bound: int = DEFAULT_BOUND) -> Plan[list[QueueInfo]]:
    """Every named queue with its depth (exact when the table holds at most ``bound`` rows,
    else estimated from a sample of its pages); ``paused`` is None without zodworker's
    tables."""
    [(estimate,)] = yield Call("admin_table_estimate", {"schema": schema}, rows="tuples")
    exact = estimate <= bound
    if exact:
        depths = dict((yield Call("admin_queue_depths", {"percent": 100.0}, rows="tuples")))
        scale = 1.0
    else:
        percent = max(0.01, min(100.0, 100.0 * _SAMPLE_ROWS / estimate))
        depths = dict((yield Call("admin_queue_depths", {"percent": percent}, rows="tuples")))
        scale = 100.0 / percent
    [(ours,)] = yield Call("admin_has_zodworker_tables", {"schema": schema}, rows="tuples")
    name = "admin_list_queues" if ours else "admin_list_queues_plain"
    queues = yield Call(name, {}, rows="tuples")
    return [
        QueueInfo(name, Count(round(depths.get(name, 0) * scale), exact), by, at, paused)
        for name, by, at, paused in queues
    ]


@dataclass(frozen=True, slots=True)
class Deleted:
    """Rows ever deleted from the jobs table, as counted ``at`` (the database's clock)."""

    total: int
    at: datetime


def plan_deleted_total(schema: str) -> Plan[Deleted]:
    """Rows ever deleted from the jobs table, by the statistics system's count."""
    [(total, at)] = yield Call("admin_deleted_total", {"schema": schema}, rows="tuples")
    return Deleted(int(total), at)


@dataclass(frozen=True, slots=True)
class KnownCrontab:
    """A cron item the database knows: since when, and when it last ran (None: never)."""

    identifier: str
    known_since: datetime
    last_execution: datetime | None


def plan_known_crontabs() -> Plan[list[KnownCrontab]]:
    """Every cron item a scheduler has registered in the schema."""
    rows = yield Call("admin_known_crontabs", {}, rows="tuples")
    return [KnownCrontab(*row) for row in rows]


def plan_list_workers() -> Plan[list[WorkerInfo]]:
    """The live zodworker pools and how many jobs each holds."""
    rows = yield Call("admin_list_workers", {}, rows="tuples")
    return [WorkerInfo(*row) for row in rows]


@dataclass(frozen=True, slots=True)
class Cancelled:
    """What cancelling a job did: ``running_on`` is the holder that was told to abort it
    (None: it was not running and is failed for good already)."""

    job_id: int
    running_on: str | None


def _queue_name(name: object) -> str:
    if not isinstance(name, str) or not name or len(name) > MAX_QUEUE_NAME_LENGTH:
        raise JobSpecError(
            "queue", f"must be a queue name of 1 to {MAX_QUEUE_NAME_LENGTH} characters"
        )
    return name


def plan_pause_queue(name: str) -> Plan[bool]:
    """Pause the named queue (created if it does not exist yet); True when it was not paused
    by zodworker before."""
    params = {"queue": _queue_name(name)}
    yield Call("admin_create_queue", params, rows="none")
    rows = yield Call("admin_pause_queue", params, rows="tuples")
    return bool(rows)


def plan_resume_queue(name: str) -> Plan[bool]:
    """Resume the named queue; False when it was not paused."""
    rows = yield Call("admin_resume_queue", {"queue": _queue_name(name)}, rows="tuples")
    return bool(rows)


def plan_cancel_job(job_id: int) -> Plan[Cancelled | None]:
    """Cancel the job (see ``admin_cancel_job`` in sql/queries/admin.sql); None when there
    is no such job."""
    if isinstance(job_id, bool) or not isinstance(job_id, int):
        raise JobSpecError("job_id", "must be an integer job id")
    rows = yield Call("admin_cancel_job", {"id": job_id}, rows="tuples")
    return Cancelled(rows[0][0], rows[0][1]) if rows else None
