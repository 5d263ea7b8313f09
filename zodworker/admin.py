"""The admin API: look at jobs, queues and workers, and act on them, from code or the CLI.

::

    admin = Admin()                                       # schema "graphile_worker"
    page = await admin.list_jobs(pool, JobFilter(state="failed", task="sendEmail"))
    for view in page.jobs:
        print(view.job.id, view.state, view.job.last_error)
    await admin.retry_jobs(pool, JobFilter(state="failed", task="sendEmail"))
    await admin.pause_queue(pool, "emails")               # no worker starts its jobs
    await admin.cancel_job(pool, job_id)                  # a running one is aborted

Every method takes a *target* like the store does: a connection (your transaction) or a
pool. :class:`Admin` is for asyncio code, :class:`SyncAdmin` for synchronous code; both run
the same plans (:mod:`zodworker.db.admin_plans`), so they behave alike.

- Listing is keyset-paginated by job id (``after`` is the cursor of the next page).
- Counts are exact up to a bound (100,000 rows by default) and estimated above it from a
  sample of the table's pages; a :class:`Count` says which.
- Bulk operations act on whatever a :class:`JobFilter` selects and skip jobs that a live
  worker holds.
- The history (:meth:`Admin.history`) lists finished jobs of tasks that keep results, with
  their outcome, output, attempts and timings, keyset-paginated by job id.
- A paused queue holds off every worker, zodworker or Node graphile-worker, until resumed,
  across restarts. A cancelled job never runs again: one nobody runs is failed for good at
  once, and a running one is aborted by the zodworker pool running it (a Node worker cannot
  be told; its job just never retries).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Literal

from .db import admin_plans as plans
from .db import limit_plans
from .db.admin_plans import (
    DEFAULT_BOUND,
    Cancelled,
    Count,
    Deleted,
    JobFilter,
    JobPage,
    JobState,
    JobView,
    KnownCrontab,
    QueueInfo,
    Stats,
    StatsRow,
    WorkerInfo,
)
from .db.limit_plans import KEEP, LimitInfo
from .db.plans import plan_force_unlock_workers
from .db.results import HistoryRow, plan_history
from .db.rows import AsyncTarget, SyncTarget
from .db.runner import AsyncRunner, SyncRunner
from .limits import Rate

__all__ = [
    "DEFAULT_BOUND",
    "KEEP",
    "Admin",
    "Cancelled",
    "Count",
    "Deleted",
    "HistoryRow",
    "JobFilter",
    "JobPage",
    "JobState",
    "JobView",
    "KnownCrontab",
    "LimitInfo",
    "QueueInfo",
    "Stats",
    "StatsRow",
    "SyncAdmin",
    "WorkerInfo",
]

_ANY = JobFilter()


class Admin(AsyncRunner):
    """Admin operations for asyncio code (see the module docs)."""

    __slots__ = ()

    async def list_jobs(
        self,
        target: AsyncTarget,
        where: JobFilter = _ANY,
        *,
        limit: int = 50,
        after: int | None = None,
        newest: bool = True,
    ) -> JobPage:
        """One page of the jobs ``where`` selects, newest first (``newest=False``: oldest)."""
        return await self._run(target, plans.plan_list_jobs(where, limit, after, newest))

    async def get_job(self, target: AsyncTarget, job_id: int) -> JobView | None:
        """The job with ``job_id`` and its state, or None."""
        page = await self.list_jobs(target, JobFilter(ids=[job_id]), limit=1)
        return page.jobs[0] if page.jobs else None

    async def count_jobs(
        self, target: AsyncTarget, where: JobFilter = _ANY, *, bound: int = DEFAULT_BOUND
    ) -> Count:
        """How many jobs ``where`` selects (exact up to ``bound``)."""
        return await self._run(target, plans.plan_count_jobs(where, bound))

    async def retry_jobs(self, target: AsyncTarget, where: JobFilter) -> list[int]:
        """Run the selected jobs now with fresh attempts; return their ids."""
        return await self._run(target, plans.plan_bulk("retry", where))

    async def delete_jobs(self, target: AsyncTarget, where: JobFilter) -> list[int]:
        """Delete the selected jobs; return their ids."""
        return await self._run(target, plans.plan_bulk("delete", where))

    async def reschedule_jobs(
        self, target: AsyncTarget, where: JobFilter, run_at: datetime
    ) -> list[int]:
        """Move the selected jobs to ``run_at``; return their ids."""
        return await self._run(target, plans.plan_bulk("reschedule", where, run_at))

    async def cancel_jobs(self, target: AsyncTarget, where: JobFilter) -> list[int]:
        """Cancel every selected job not failed for good yet (see :meth:`cancel_job`);
        return their ids."""
        return await self._run(target, plans.plan_bulk("cancel", where))

    async def cancel_job(self, target: AsyncTarget, job_id: int) -> Cancelled | None:
        """Cancel a job (see the module docs); None when there is no such job."""
        return await self._run(target, plans.plan_cancel_job(job_id))

    async def stats(self, target: AsyncTarget, *, bound: int = DEFAULT_BOUND) -> Stats:
        """Jobs by task, queue and state, the oldest ready job per queue, and the jobs
        running and waiting under each limit."""
        return await self._run(target, limit_plans.plan_stats_and_limits(self.schema, bound))

    async def list_queues(
        self, target: AsyncTarget, *, bound: int = DEFAULT_BOUND
    ) -> list[QueueInfo]:
        """Every named queue: depth, holder, paused."""
        return await self._run(target, plans.plan_list_queues(self.schema, bound))

    async def pause_queue(self, target: AsyncTarget, name: str) -> bool:
        """Pause a named queue; False when it was paused already."""
        return await self._run(target, plans.plan_pause_queue(name))

    async def resume_queue(self, target: AsyncTarget, name: str) -> bool:
        """Resume a paused queue; False when it was not paused."""
        return await self._run(target, plans.plan_resume_queue(name))

    async def list_workers(self, target: AsyncTarget) -> list[WorkerInfo]:
        """The live zodworker pools."""
        return await self._run(target, plans.plan_list_workers())

    async def known_crontabs(self, target: AsyncTarget) -> list[KnownCrontab]:
        """The cron items schedulers registered, and when each last ran."""
        return await self._run(target, plans.plan_known_crontabs())

    async def deleted_total(self, target: AsyncTarget) -> Deleted:
        """Rows ever deleted from the jobs table (completions by any worker, Node's too,
        and deletions), as PostgreSQL's statistics count them; sample it for a rate."""
        return await self._run(target, plans.plan_deleted_total(self.schema))

    async def history(
        self,
        target: AsyncTarget,
        *,
        task: str | None = None,
        outcome: str | None = None,
        job_id: int | None = None,
        before: int | None = None,
        limit: int = 50,
    ) -> list[HistoryRow]:
        """Finished jobs of tasks that keep results, newest first: optionally of one task,
        one outcome (``success``, ``failed``, ``cancelled``) or one job; ``before``: the
        last id of the previous page."""
        plan = plan_history(task=task, outcome=outcome, job_id=job_id, before=before, limit=limit)
        return await self._run(target, plan)

    async def limits(self, target: AsyncTarget, *, bound: int = DEFAULT_BOUND) -> list[LimitInfo]:
        """Every limit: its numbers, keys, jobs running under it and jobs waiting."""
        return await self._run(target, limit_plans.plan_list_limits(self.schema, bound))

    async def set_limit(
        self,
        target: AsyncTarget,
        name: str,
        *,
        concurrency: int | Literal["keep"] | None = KEEP,
        rate: Rate | Literal["keep"] | None = KEEP,
    ) -> None:
        """Set a limit's numbers now (None: no cap); every pool uses them at its next
        fetch, and they hold whatever code declares until :meth:`reset_limit`."""
        await self._run(target, limit_plans.plan_set_limit(name, concurrency, rate))

    async def reset_limit(self, target: AsyncTarget, name: str) -> bool:
        """Back to the numbers code declared; False when there is no such limit."""
        return await self._run(target, limit_plans.plan_reset_limit(name))

    async def unlock_workers(self, target: AsyncTarget, worker_ids: Sequence[str]) -> None:
        """Release every job and queue the given workers (pool or graphile-worker ids) hold."""
        await self._run(target, plan_force_unlock_workers(worker_ids))


class SyncAdmin(SyncRunner):
    """:class:`Admin` for synchronous code."""

    __slots__ = ()

    def list_jobs(
        self,
        target: SyncTarget,
        where: JobFilter = _ANY,
        *,
        limit: int = 50,
        after: int | None = None,
        newest: bool = True,
    ) -> JobPage:
        """See :meth:`Admin.list_jobs`."""
        return self._run(target, plans.plan_list_jobs(where, limit, after, newest))

    def get_job(self, target: SyncTarget, job_id: int) -> JobView | None:
        """See :meth:`Admin.get_job`."""
        page = self.list_jobs(target, JobFilter(ids=[job_id]), limit=1)
        return page.jobs[0] if page.jobs else None

    def count_jobs(
        self, target: SyncTarget, where: JobFilter = _ANY, *, bound: int = DEFAULT_BOUND
    ) -> Count:
        """See :meth:`Admin.count_jobs`."""
        return self._run(target, plans.plan_count_jobs(where, bound))

    def retry_jobs(self, target: SyncTarget, where: JobFilter) -> list[int]:
        """See :meth:`Admin.retry_jobs`."""
        return self._run(target, plans.plan_bulk("retry", where))

    def delete_jobs(self, target: SyncTarget, where: JobFilter) -> list[int]:
        """See :meth:`Admin.delete_jobs`."""
        return self._run(target, plans.plan_bulk("delete", where))

    def reschedule_jobs(self, target: SyncTarget, where: JobFilter, run_at: datetime) -> list[int]:
        """See :meth:`Admin.reschedule_jobs`."""
        return self._run(target, plans.plan_bulk("reschedule", where, run_at))

    def cancel_jobs(self, target: SyncTarget, where: JobFilter) -> list[int]:
        """See :meth:`Admin.cancel_jobs`."""
        return self._run(target, plans.plan_bulk("cancel", where))

    def cancel_job(self, target: SyncTarget, job_id: int) -> Cancelled | None:
        """See :meth:`Admin.cancel_job`."""
        return self._run(target, plans.plan_cancel_job(job_id))

    def stats(self, target: SyncTarget, *, bound: int = DEFAULT_BOUND) -> Stats:
        """See :meth:`Admin.stats`."""
        return self._run(target, limit_plans.plan_stats_and_limits(self.schema, bound))

    def list_queues(self, target: SyncTarget, *, bound: int = DEFAULT_BOUND) -> list[QueueInfo]:
        """See :meth:`Admin.list_queues`."""
        return self._run(target, plans.plan_list_queues(self.schema, bound))

    def pause_queue(self, target: SyncTarget, name: str) -> bool:
        """See :meth:`Admin.pause_queue`."""
        return self._run(target, plans.plan_pause_queue(name))

    def resume_queue(self, target: SyncTarget, name: str) -> bool:
        """See :meth:`Admin.resume_queue`."""
        return self._run(target, plans.plan_resume_queue(name))

    def list_workers(self, target: SyncTarget) -> list[WorkerInfo]:
        """See :meth:`Admin.list_workers`."""
        return self._run(target, plans.plan_list_workers())

    def known_crontabs(self, target: SyncTarget) -> list[KnownCrontab]:
        """See :meth:`Admin.known_crontabs`."""
        return self._run(target, plans.plan_known_crontabs())

    def deleted_total(self, target: SyncTarget) -> Deleted:
        """See :meth:`Admin.deleted_total`."""
        return self._run(target, plans.plan_deleted_total(self.schema))

    def history(
        self,
        target: SyncTarget,
        *,
        task: str | None = None,
        outcome: str | None = None,
        job_id: int | None = None,
        before: int | None = None,
        limit: int = 50,
    ) -> list[HistoryRow]:
        """Finished jobs of tasks that keep results (see :meth:`Admin.history`)."""
        plan = plan_history(task=task, outcome=outcome, job_id=job_id, before=before, limit=limit)
        return self._run(target, plan)

    def limits(self, target: SyncTarget, *, bound: int = DEFAULT_BOUND) -> list[LimitInfo]:
        """Every limit (see :meth:`Admin.limits`)."""
        return self._run(target, limit_plans.plan_list_limits(self.schema, bound))

    def set_limit(
        self,
        target: SyncTarget,
        name: str,
        *,
        concurrency: int | Literal["keep"] | None = KEEP,
        rate: Rate | Literal["keep"] | None = KEEP,
    ) -> None:
        """Set a limit's numbers now (see :meth:`Admin.set_limit`)."""
        self._run(target, limit_plans.plan_set_limit(name, concurrency, rate))

    def reset_limit(self, target: SyncTarget, name: str) -> bool:
        """Back to the declared numbers (see :meth:`Admin.reset_limit`)."""
        return self._run(target, limit_plans.plan_reset_limit(name))

    def unlock_workers(self, target: SyncTarget, worker_ids: Sequence[str]) -> None:
        """See :meth:`Admin.unlock_workers`."""
        self._run(target, plan_force_unlock_workers(worker_ids))
