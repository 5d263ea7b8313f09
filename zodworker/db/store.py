"""The producer store: adding, removing and administering jobs, from async or sync code.

Each method takes a *target*: a connection (statements run in the caller's transaction and
nothing is committed for them, so the job and its NOTIFY exist only if the caller commits;
on an autocommit connection each call commits by itself) or a pool (a connection is borrowed
for the call and committed when it returns).

:class:`Store` (psycopg ``AsyncConnection`` / ``AsyncConnectionPool``) and :class:`SyncStore`
(``Connection`` / ``ConnectionPool``) run the same plans (:mod:`zodworker.db.plans`): input is
validated before any SQL is sent (:class:`~zodworker.errors.JobSpecError`, so a bad call never
aborts the caller's transaction), retries and name resolution are shared, and database errors
are translated in one place (:func:`zodworker.db.rows.translate_errors`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from ..job import Job, JobKeyMode, JobSpec
from ..limits import Limit
from . import limit_plans, plans
from .rows import AsyncTarget, SyncTarget
from .runner import AsyncRunner, SyncRunner

__all__ = ["Store", "SyncStore"]


def _adding(
    spec: JobSpec, job_key_mode: JobKeyMode | None, limits: Sequence[Limit] | None
) -> tuple[plans.Plan[Job], bool]:
    """The plan adding one job, and whether its statements must be one transaction (a
    limited job never exists without its limits)."""
    if limits:
        return limit_plans.plan_add_limited(spec, job_key_mode, limits), True
    return plans.plan_add_job(spec, job_key_mode), False


def _adding_many(
    specs: Sequence[JobSpec],
    preserve_run_at: bool,
    limits: Sequence[Sequence[Limit] | None] | None,
) -> tuple[plans.Plan[Sequence[Job]], bool]:
    """:func:`_adding` for a batch (``limits[i]`` for ``specs[i]``)."""
    if limits is not None and any(limits):
        return limit_plans.plan_add_many_limited(specs, preserve_run_at, limits), True
    return plans.plan_add_jobs(specs, preserve_run_at), False


class Store(AsyncRunner):
    """Job operations on one graphile-worker schema (default ``graphile_worker``), for
    asyncio code."""

    __slots__ = ()

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
        limits: Sequence[Limit] | None = None,
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
        plan, atomic = _adding(spec, job_key_mode, limits)
        return await self._run(target, plan, atomic=atomic)

    async def add_spec(
        self,
        target: AsyncTarget,
        spec: JobSpec,
        job_key_mode: JobKeyMode | None = None,
        *,
        limits: Sequence[Limit] | None = None,
    ) -> Job:
        """:meth:`add_job` for a ready-made :class:`JobSpec`."""
        plan, atomic = _adding(spec, job_key_mode, limits)
        return await self._run(target, plan, atomic=atomic)

    async def add_jobs(
        self,
        target: AsyncTarget,
        specs: Sequence[JobSpec],
        *,
        job_key_preserve_run_at: bool = False,
        limits: Sequence[Sequence[Limit] | None] | None = None,
    ) -> Sequence[Job]:
        """Add many jobs in one statement (one NOTIFY); return one row per spec.

        Key handling is that of ``job_key_mode="replace"``, or ``"preserve_run_at"`` when
        ``job_key_preserve_run_at`` is true (``unsafe_dedupe`` is single-job only).
        ``limits[i]``: the limits ``specs[i]`` is under (None: none).
        """
        many, atomic = _adding_many(specs, job_key_preserve_run_at, limits)
        return await self._run(target, many, atomic=atomic)

    async def declare_limits(self, target: AsyncTarget, limits: Sequence[Limit]) -> None:
        """Write the numbers code declares for ``limits``; a number an operator set
        (:meth:`zodworker.admin.Admin.set_limit`) holds until it is reset."""
        await self._run(target, limit_plans.plan_declare_limits(limits))

    async def remove_job(self, target: AsyncTarget, job_key: str) -> Job | None:
        """Remove the job with ``job_key``; return it, or None when no job has that key.

        A job no live worker holds is deleted. A running one loses its key and its remaining
        attempts: it finishes, but never runs again.
        """
        return await self._run(target, plans.plan_remove_job(job_key))

    async def complete_jobs(self, target: AsyncTarget, ids: Sequence[int]) -> Sequence[Job]:
        """Delete the given jobs (skipping any a live worker holds); return the deleted rows."""
        return await self._run(target, plans.plan_complete_jobs(ids))

    async def permanently_fail_jobs(
        self, target: AsyncTarget, ids: Sequence[int], reason: str | None = None
    ) -> Sequence[Job]:
        """Mark the given jobs failed for good with ``reason``; return the changed rows."""
        return await self._run(target, plans.plan_permanently_fail_jobs(ids, reason))

    async def reschedule_jobs(
        self,
        target: AsyncTarget,
        ids: Sequence[int],
        *,
        run_at: datetime | None = None,
        priority: int | None = None,
        attempts: int | None = None,
        max_attempts: int | None = None,
    ) -> Sequence[Job]:
        """Change run_at / priority / attempts / max_attempts of the given jobs.

        ``None`` leaves a column as it is. Jobs a live worker holds are skipped.
        """
        plan = plans.plan_reschedule_jobs(ids, run_at, priority, attempts, max_attempts)
        return await self._run(target, plan)

    async def force_unlock_workers(self, target: AsyncTarget, worker_ids: Sequence[str]) -> None:
        """Release every job and queue lock held by the given worker ids."""
        await self._run(target, plans.plan_force_unlock_workers(worker_ids))

    async def get_job(self, target: AsyncTarget, job_id: int) -> Job | None:
        """The job with ``job_id``, or None."""
        return await self._run(target, plans.plan_get_job(job_id))


class SyncStore(SyncRunner):
    """:class:`Store` for synchronous code (Django, Flask, scripts): the same operations,
    validation and guarantees on a psycopg ``Connection`` or ``ConnectionPool``."""

    __slots__ = ()

    def add_job(
        self,
        target: SyncTarget,
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
        limits: Sequence[Limit] | None = None,
    ) -> Job:
        """Add one job (see :meth:`Store.add_job`)."""
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
        plan, atomic = _adding(spec, job_key_mode, limits)
        return self._run(target, plan, atomic=atomic)

    def add_spec(
        self,
        target: SyncTarget,
        spec: JobSpec,
        job_key_mode: JobKeyMode | None = None,
        *,
        limits: Sequence[Limit] | None = None,
    ) -> Job:
        """:meth:`add_job` for a ready-made :class:`JobSpec`."""
        plan, atomic = _adding(spec, job_key_mode, limits)
        return self._run(target, plan, atomic=atomic)

    def add_jobs(
        self,
        target: SyncTarget,
        specs: Sequence[JobSpec],
        *,
        job_key_preserve_run_at: bool = False,
        limits: Sequence[Sequence[Limit] | None] | None = None,
    ) -> Sequence[Job]:
        """Add many jobs in one statement (see :meth:`Store.add_jobs`)."""
        many, atomic = _adding_many(specs, job_key_preserve_run_at, limits)
        return self._run(target, many, atomic=atomic)

    def declare_limits(self, target: SyncTarget, limits: Sequence[Limit]) -> None:
        """Write declared numbers (see :meth:`Store.declare_limits`)."""
        self._run(target, limit_plans.plan_declare_limits(limits))

    def remove_job(self, target: SyncTarget, job_key: str) -> Job | None:
        """Remove the job with ``job_key`` (see :meth:`Store.remove_job`)."""
        return self._run(target, plans.plan_remove_job(job_key))

    def complete_jobs(self, target: SyncTarget, ids: Sequence[int]) -> Sequence[Job]:
        """Delete the given jobs (see :meth:`Store.complete_jobs`)."""
        return self._run(target, plans.plan_complete_jobs(ids))

    def permanently_fail_jobs(
        self, target: SyncTarget, ids: Sequence[int], reason: str | None = None
    ) -> Sequence[Job]:
        """Fail the given jobs for good (see :meth:`Store.permanently_fail_jobs`)."""
        return self._run(target, plans.plan_permanently_fail_jobs(ids, reason))

    def reschedule_jobs(
        self,
        target: SyncTarget,
        ids: Sequence[int],
        *,
        run_at: datetime | None = None,
        priority: int | None = None,
        attempts: int | None = None,
        max_attempts: int | None = None,
    ) -> Sequence[Job]:
        """Change the given jobs' schedule (see :meth:`Store.reschedule_jobs`)."""
        plan = plans.plan_reschedule_jobs(ids, run_at, priority, attempts, max_attempts)
        return self._run(target, plan)

    def force_unlock_workers(self, target: SyncTarget, worker_ids: Sequence[str]) -> None:
        """Release the locks of the given worker ids (see :meth:`Store.force_unlock_workers`)."""
        self._run(target, plans.plan_force_unlock_workers(worker_ids))

    def get_job(self, target: SyncTarget, job_id: int) -> Job | None:
        """The job with ``job_id``, or None."""
        return self._run(target, plans.plan_get_job(job_id))
