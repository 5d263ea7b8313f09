"""Plans for limited jobs (:mod:`zodworker.limits`): add them, declare limits' numbers.

A limited job is added by the ordinary plans (:mod:`zodworker.db.plans`) with the flag
``zw:limited``, then the limits it is under are recorded (``record_limits``) on the same
connection; the runner makes the two one transaction when the connection has none open, so
a limited job never exists without its limits (it would never be fetched).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal

import msgspec

from ..errors import JobSpecError
from ..job import Job, JobKeyMode, JobSpec
from ..limits import (
    LIMITED_FLAG,
    Limit,
    Rate,
    check_concurrency,
    check_limit,
    check_limits,
    check_rate,
)
from .admin_plans import DEFAULT_BOUND, Count, Stats, plan_stats
from .plans import Call, Plan, plan_add_job, plan_add_jobs

__all__ = [
    "KEEP",
    "LimitInfo",
    "declare_params",
    "plan_add_limited",
    "plan_add_many_limited",
    "plan_declare_limits",
    "plan_list_limits",
    "plan_reset_limit",
    "plan_set_limit",
    "plan_stats_and_limits",
]


def _flagged(spec: JobSpec) -> JobSpec:
    flags = spec.flags
    if flags is not None and LIMITED_FLAG in flags:
        return spec
    return msgspec.structs.replace(spec, flags=[*(flags or ()), LIMITED_FLAG])


def _bound(limits: Sequence[Limit], payload: Any, field: str) -> tuple[Limit, ...]:
    return tuple(limit.bound(payload) for limit in check_limits(limits, field))


def declare_params(limits: Sequence[Limit]) -> dict[str, list[Any]]:
    """The numbers of each distinct limit (the first of a name wins), as query arrays."""
    first: dict[str, Limit] = {}
    for limit in limits:
        first.setdefault(limit.name, limit)
    chosen = list(first.values())
    return {
        "limit_names": [limit.name for limit in chosen],
        "concurrency": [limit.concurrency for limit in chosen],
        "rate_counts": [None if limit.rate is None else limit.rate.count for limit in chosen],
        "rate_seconds": [None if limit.rate is None else float(limit.rate.per) for limit in chosen],
    }


def _record(jobs: Sequence[Job], limits: Sequence[Sequence[Limit]]) -> Call:
    job_ids: list[int] = []
    positions: list[int] = []
    names: list[str] = []
    keys: list[str] = []
    for job, under in zip(jobs, limits, strict=True):
        for position, limit in enumerate(under):
            job_ids.append(job.id)
            positions.append(position)
            names.append(limit.name)
            keys.append(limit.key_for(None))  # bound: the key is a string already
    params = {
        "job_ids": job_ids,
        "positions": positions,
        "names": names,
        "keys": keys,
        **declare_params([limit for under in limits for limit in under]),
    }
    return Call("record_limits", params, rows="none")


def plan_add_limited(
    spec: JobSpec, job_key_mode: JobKeyMode | None, limits: Sequence[Limit]
) -> Plan[Job]:
    """Add one job under ``limits`` (run atomically: see the module docs)."""
    bound = _bound(limits, spec.payload, "limits")
    job = yield from plan_add_job(_flagged(spec), job_key_mode)
    yield _record([job], [bound])
    return job


def plan_add_many_limited(
    specs: Sequence[JobSpec], preserve_run_at: bool, limits: Sequence[Sequence[Limit] | None]
) -> Plan[Sequence[Job]]:
    """Add many jobs, ``limits[i]`` for ``specs[i]`` (None or empty: not limited)."""
    if isinstance(limits, (str, bytes)) or len(limits) != len(specs):
        raise JobSpecError("limits", "must hold one list of limits (or None) per spec")
    bound: list[tuple[Limit, ...]] = []
    flagged: list[JobSpec] = []
    for index, (spec, under) in enumerate(zip(specs, limits, strict=True)):
        if not isinstance(spec, JobSpec):
            raise JobSpecError(f"specs[{index}]", f"must be a JobSpec, not {type(spec).__name__}")
        bound.append(_bound(under or (), spec.payload, f"limits[{index}]"))
        flagged.append(_flagged(spec) if bound[-1] else spec)
    jobs = yield from plan_add_jobs(flagged, preserve_run_at)
    in_order = _in_spec_order(jobs, flagged)
    limited = [(job, under) for job, under in zip(in_order, bound, strict=True) if under]
    if limited:
        yield _record([job for job, _ in limited], [under for _, under in limited])
    return jobs


def _in_spec_order(jobs: Sequence[Job], specs: Sequence[JobSpec]) -> list[Job]:
    """The added rows, one per spec in the specs' order: a keyed spec's row by its key, the
    others by id (a batch inserts them in order)."""
    by_key = {job.key: job for job in jobs if job.key is not None}
    plain = iter(sorted((job for job in jobs if job.key is None), key=lambda job: job.id))
    ordered = []
    for spec in specs:
        job = by_key.get(spec.job_key) if spec.job_key is not None else next(plain, None)
        if job is None:
            raise JobSpecError("specs", "the batch's rows do not match its specs; retry it")
        ordered.append(job)
    return ordered


def plan_declare_limits(limits: Sequence[Limit]) -> Plan[None]:
    """Write the numbers code declares for ``limits`` (an operator's setting holds)."""
    if isinstance(limits, (str, bytes)) or not isinstance(limits, Sequence):
        raise JobSpecError("limits", "must be a list of Limit")
    for index, limit in enumerate(limits):
        check_limit(limit, f"limits[{index}]")
    if limits:
        yield Call("declare_limits", declare_params(limits), rows="none")


@dataclass(frozen=True, slots=True)
class LimitInfo:
    """A limit as the database holds it (:meth:`zodworker.admin.Admin.limits`)."""

    name: str
    concurrency: int | None
    rate: Rate | None
    declared_concurrency: int | None
    declared_rate: Rate | None
    overridden: bool
    """An operator set the numbers in effect (they hold until reset)."""
    updated_at: datetime
    keys: int
    """Keys with jobs under this limit (or served within the last hour)."""
    running: int
    """Jobs running under it now (concurrency slots held)."""
    waiting: Count
    """Jobs under it that are not running: waiting for room, for their run_at, or retries."""


def _rate(count: int | None, per: float | None) -> Rate | None:
    return None if count is None or per is None else Rate(count, per)


def plan_list_limits(schema: str, bound: int = DEFAULT_BOUND) -> Plan[list[LimitInfo]]:
    """Every limit with its numbers and load (counts exact up to ``bound`` jobs); none
    where zodworker's limit tables are not installed."""
    [(installed,)] = yield Call("admin_has_limits", {"schema": schema}, rows="tuples")
    if not installed:
        return []
    rows = yield Call("admin_limits", {"bound": bound}, rows="tuples")
    infos = []
    for row in rows:
        (name, conc, count, per, d_conc, d_count, d_per, overridden, updated) = row[:9]
        keys, running, under = row[9:]
        waiting = max(under - running, 0)
        infos.append(
            LimitInfo(
                name=name,
                concurrency=conc,
                rate=_rate(count, per),
                declared_concurrency=d_conc,
                declared_rate=_rate(d_count, d_per),
                overridden=overridden,
                updated_at=updated,
                keys=keys,
                running=running,
                waiting=Count(waiting, exact=under < bound),
            )
        )
    return infos


def plan_stats_and_limits(schema: str, bound: int = DEFAULT_BOUND) -> Plan[Stats]:
    """:func:`~zodworker.db.admin_plans.plan_stats` with every limit's load."""
    stats = yield from plan_stats(schema, bound)
    limits = yield from plan_list_limits(schema, bound)
    return dataclasses.replace(stats, limits=limits)


KEEP: Final = "keep"
"""For :func:`plan_set_limit`: leave this number as it is."""


def plan_set_limit(
    name: str, concurrency: int | Literal["keep"] | None, rate: Rate | Literal["keep"] | None
) -> Plan[None]:
    """Set a limit's numbers (None: no cap; ``"keep"``: unchanged) until reset."""
    check_limit(Limit(name) if isinstance(name, str) else name, "limit")
    if concurrency != KEEP:
        check_concurrency(concurrency, "concurrency")
    if rate != KEEP and rate is not None:
        check_rate(rate, "rate")
    if concurrency == KEEP and rate == KEEP:
        raise JobSpecError("concurrency", "nothing to set: pass concurrency and/or rate")
    chosen = None if rate == KEEP else rate
    params = {
        "name": name,
        "concurrency": None if concurrency == KEEP else concurrency,
        "rate_count": None if not isinstance(chosen, Rate) else chosen.count,
        "rate_seconds": None if not isinstance(chosen, Rate) else float(chosen.per),
        "set_concurrency": concurrency != KEEP,
        "set_rate": rate != KEEP,
    }
    yield Call("admin_set_limit", params, rows="none")


def plan_reset_limit(name: str) -> Plan[bool]:
    """Back to the declared numbers; False when there is no such limit."""
    check_limit(Limit(name) if isinstance(name, str) else name, "limit")
    rows = yield Call("admin_reset_limit", {"name": name}, rows="tuples")
    return bool(rows)
