"""Reporting outcomes: decide what to write about each job, then write it in batches.

:meth:`Completer.report` is the second half of "run, then report": a success is queued for
``complete``, a failure becomes a :class:`~zodworker.db.worker_store.Failure` (with the
replacement payload of a partly failed batch, and ``permanent`` for ``PermanentFailure``)
queued for ``fail``, a :class:`~zodworker.errors.Snooze` is queued for ``snooze`` (run again
later, attempt kept); the job events and the log lines go out here. A success of a task that
keeps results is queued for ``complete_recorded`` instead (its output goes into the history
row written with it); a failure of one carries ``record`` (its outcome should it be final).
Jobs fetched but never started are queued for ``return_jobs`` (:meth:`Completer.give_back`).

Each of the five writes has a :class:`Batcher`: one write in flight at a time, the next one
carrying everything that arrived meanwhile (after the configured delay). After a write that
may have made jobs runnable at once (a named queue released; jobs given back or snoozed:
each write returns whether it did) the pool is told (``on_written``) and looks for jobs
again. Completing or failing jobs without a queue frees nothing a fetch could find (a
failure retries seconds later, which polling finds), so after those it is not told: a pool
running one job now and then makes two statements per job (claim, complete), not three (an
empty fetch after each). Freed limit slots wake the pool through their own path. A failed
write keeps its items and is retried with backoff, so results survive a database restart.
The completer is handed the three writes as plain functions taking the *owner* (the lease a
job was fetched under, its ``locked_by``) so that each write is fenced by it; a batch
holding jobs of two leases is written as one statement per lease. A run that was aborted
because the lease was lost is never written as an outcome: its job is given back (fenced, so
a no-op once another pool has it).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Generic, TypeVar

import anyio
from anyio.abc import TaskStatus

from ..db.worker_store import Failure
from ..errors import JobCancelled, PermanentFailure, Snooze
from ..events import EventName
from ..job import Job
from .executor import Outcome
from .joblog import JobLog, failure_text, outcome

__all__ = ["Batcher", "Completer"]

T = TypeVar("T")
Emit = Callable[..., None]
Write = Callable[[str, list[int], list[int]], Awaitable[None]]
"""``write(owner, job_ids, queue_ids)``."""
WriteFailures = Callable[[str, list[Failure], list[int]], Awaitable[None]]
"""``fail(owner, failures, queue_ids)``."""
WriteSnoozes = Callable[[str, list[tuple[int, float]], list[int]], Awaitable[None]]
"""``snooze(owner, [(job_id, seconds)], queue_ids)``."""
Recorded = tuple[int, str | None, float]
"""A success to keep: job id, output (JSON text or None), seconds the handler ran."""
WriteRecorded = Callable[[str, list[Recorded], list[int]], Awaitable[None]]
"""``complete_recorded(owner, [(job_id, output, duration)], queue_ids)``."""


class Batcher(Generic[T]):
    """Collects items and writes them in batches (see the module docs)."""

    def __init__(
        self,
        write: Callable[[list[T]], Awaitable[bool]],
        delay: float,
        on_written: Callable[[], None],
    ) -> None:
        self._write = write
        self._delay = max(delay, 0.0)
        self._on_written = on_written
        self._items: list[T] = []
        self._writing: list[T] = []
        self._ready = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()

    def add(self, item: T) -> None:
        """Queue one item for the next write."""
        self._items.append(item)
        self._idle.clear()
        self._ready.set()

    def extend(self, items: list[T]) -> None:
        """Queue several items for the next write."""
        if items:
            self._items.extend(items)
            self._idle.clear()
            self._ready.set()

    async def run(self, logger: logging.Logger) -> None:
        """Write until cancelled."""
        failures = 0
        while True:
            await self._ready.wait()
            if self._delay:
                await asyncio.sleep(self._delay)
            self._ready.clear()
            items, self._items = self._items, []
            self._writing = items
            try:
                freed = await self._write(items)
            except Exception as exc:  # keep the results; the database may come back
                self._writing = []
                self._items[:0] = items
                self._ready.set()
                failures += 1
                logger.warning("writing %d job results failed (%s); retrying", len(items), exc)
                await asyncio.sleep(min(30.0, 0.1 * 2**failures))
                continue
            self._writing = []
            failures = 0
            if freed:
                self._on_written()
            if not self._items:
                self._idle.set()

    @property
    def idle(self) -> bool:
        """Nothing waits to be written."""
        return self._idle.is_set()

    def pending(self) -> list[T]:
        """What is queued or being written."""
        return [*self._writing, *self._items]

    async def drained(self) -> None:
        """Return once everything added so far has been written."""
        await self._idle.wait()


def _by_owner(jobs: list[Job]) -> Iterable[tuple[str, list[Job]]]:
    """The jobs grouped by the lease they were fetched under (almost always one)."""
    owner = jobs[0].locked_by if jobs else None
    if all(job.locked_by == owner for job in jobs):
        return [(owner or "", jobs)] if jobs else []
    groups: dict[str, list[Job]] = {}
    for job in jobs:
        groups.setdefault(job.locked_by or "", []).append(job)
    return groups.items()


def _queues(jobs: Iterable[Job]) -> list[int]:
    return [job.job_queue_id for job in jobs if job.job_queue_id is not None]


def _ids(jobs: list[Job]) -> list[int]:
    return [job.id for job in jobs]


async def _per_owner(
    jobs: list[Job], write: Callable[[str, list[Job], list[int]], Awaitable[None]]
) -> bool:
    """``write(owner, jobs, queue_ids)`` for each lease the jobs were fetched under; whether
    it released a named queue (jobs waiting in it can run now)."""
    released = False
    for owner, group in _by_owner(jobs):
        queues = _queues(group)
        await write(owner, group, queues)
        released = released or bool(queues)
    return released


class Completer:
    """Turns outcomes into writes (see the module docs)."""

    def __init__(
        self,
        *,
        complete: Write,
        fail: WriteFailures,
        return_jobs: Write,
        snooze: WriteSnoozes,
        complete_recorded: WriteRecorded,
        complete_delay: float,
        fail_delay: float,
        on_written: Callable[[], None],
        emit: Emit,
        wants: Callable[[EventName], bool],
        logger: logging.Logger,
        log_jobs: bool = True,
    ) -> None:
        self._complete, self._fail, self._return = complete, fail, return_jobs
        self._snooze = snooze
        self._complete_recorded = complete_recorded
        self._completions: Batcher[Job] = Batcher(
            self._write_completions, complete_delay, on_written
        )
        self._failures: Batcher[tuple[Job, Failure]] = Batcher(
            self._write_failures, fail_delay, on_written
        )
        self._returns: Batcher[Job] = Batcher(self._write_returns, 0.0, on_written)
        self._snoozes: Batcher[tuple[Job, float]] = Batcher(
            self._write_snoozes, complete_delay, on_written
        )
        self._recorded: Batcher[tuple[Job, Recorded]] = Batcher(
            self._write_recorded, complete_delay, on_written
        )
        self._emit = emit
        self._wants = wants
        self._logger = logger
        self._log = JobLog(logger, log_jobs=log_jobs)
        self.completed = 0
        """Jobs completed since the pool started (read by the lease's heartbeat)."""
        self.failed = 0
        """Attempts that failed since the pool started, retried or not."""

    async def _write_completions(self, jobs: list[Job]) -> bool:
        return await _per_owner(
            jobs, lambda owner, done, queues: self._complete(owner, _ids(done), queues)
        )

    async def _write_failures(self, items: list[tuple[Job, Failure]]) -> bool:
        failures = {failure.id: failure for _, failure in items}
        return await _per_owner(
            [job for job, _ in items],
            lambda owner, failed, queues: self._fail(
                owner, [failures[job.id] for job in failed], queues
            ),
        )

    async def _write_snoozes(self, items: list[tuple[Job, float]]) -> bool:
        seconds = {job.id: wait for job, wait in items}
        await _per_owner(
            [job for job, _ in items],
            lambda owner, later, queues: self._snooze(
                owner, [(job.id, seconds[job.id]) for job in later], queues
            ),
        )
        return True  # a snooze of 0 s runs again at once

    async def _write_recorded(self, items: list[tuple[Job, Recorded]]) -> bool:
        kept = {job.id: record for job, record in items}
        return await _per_owner(
            [job for job, _ in items],
            lambda owner, done, queues: self._complete_recorded(
                owner, [kept[job.id] for job in done], queues
            ),
        )

    async def _write_returns(self, jobs: list[Job]) -> bool:
        await _per_owner(jobs, lambda owner, back, queues: self._return(owner, _ids(back), queues))
        return True  # given back: runnable at once

    def report(self, result: Outcome) -> None:
        """Queue the write for ``result`` and announce it."""
        job, error, duration = result.job, result.error, result.duration
        if result.give_back:  # aborted because its lease was lost: not an outcome
            self._returns.add(job)
            return
        if error is None:
            self.completed += 1
            if result.record:
                self._recorded.add((job, (job.id, result.output, duration)))
            else:
                self._completions.add(job)
            self._log.success(job, duration)
            if self._wants("job:success"):
                self._emit("job:success", job=job, duration=duration)
        elif isinstance(error, Snooze):  # not an outcome of the attempt: it is given back
            self._snoozes.add((job, error.seconds))
            self._log.snoozed(job, error.seconds, duration)
        else:
            self._report_failure(result, error)
        if self._wants("job:complete"):
            name = outcome(job, error)
            self._emit("job:complete", job=job, error=error, duration=duration, outcome=name)

    def _report_failure(self, result: Outcome, error: BaseException) -> None:
        job, duration = result.job, result.duration
        self.failed += 1
        permanent = isinstance(error, PermanentFailure)
        message = failure_text(error)
        failure = Failure(job.id, message, result.replacement, permanent)
        if result.record:
            failure.record = "cancelled" if isinstance(error, JobCancelled) else "failed"
            failure.attempts, failure.duration = job.attempts, duration
        self._failures.add((job, failure))
        self._log.failure(job, error, duration, outcome(job, error))
        self._emit("job:error", job=job, error=error, duration=duration)
        if permanent or job.attempts >= job.max_attempts:
            self._emit("job:failed", job=job, error=error, duration=duration)

    def give_back(self, jobs: list[Job]) -> None:
        """Queue jobs fetched but never started for return (their attempt given back)."""
        self._returns.extend(jobs)

    def pending_ids(self) -> set[int]:
        """Ids of the jobs whose outcome is queued or being written."""
        ids = {job.id for job in self._completions.pending()}
        ids.update(job.id for job, _ in self._failures.pending())
        ids.update(job.id for job in self._returns.pending())
        ids.update(job.id for job, _ in self._snoozes.pending())
        ids.update(job.id for job, _ in self._recorded.pending())
        return ids

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Write results until cancelled."""
        async with anyio.create_task_group() as group:
            for batcher in self._batchers():
                group.start_soon(batcher.run, self._logger)
            task_status.started()

    def _batchers(self) -> tuple[Batcher[Any], ...]:
        return (self._completions, self._failures, self._returns, self._snoozes, self._recorded)

    @property
    def idle(self) -> bool:
        """Nothing waits to be written."""
        return all(batcher.idle for batcher in self._batchers())

    async def drained(self) -> None:
        """Return once everything reported so far has been written."""
        while not self.idle:
            for batcher in self._batchers():
                await batcher.drained()
