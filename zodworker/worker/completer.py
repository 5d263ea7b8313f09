"""Reporting outcomes: decide what to write about each job, then write it in batches.

:meth:`Completer.report` is the second half of "run, then report": a success is queued for
``complete``, a failure becomes a :class:`~zodworker.db.worker_store.Failure` (with the
replacement payload of a partly failed batch, and ``permanent`` for ``PermanentFailure``)
queued for ``fail``; the job events and the failure log line go out here. Jobs fetched but
never started are queued for ``return_jobs`` (:meth:`Completer.give_back`).

Each of the three writes has a :class:`Batcher`: one write in flight at a time, the next one
carrying everything that arrived meanwhile (after the configured delay). A failed write keeps
its items and is retried with backoff, so results survive a database restart. The completer
is handed the three writes as plain functions.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

import anyio
from anyio.abc import TaskStatus

from ..db.worker_store import Failure
from ..errors import PermanentFailure
from ..events import EventName
from .executor import Outcome, encode_error

__all__ = ["Batcher", "Completer"]

T = TypeVar("T")
Emit = Callable[..., None]


class Batcher(Generic[T]):
    """Collects items and writes them in batches (see the module docs)."""

    def __init__(
        self,
        write: Callable[[list[T]], Awaitable[None]],
        delay: float,
        on_written: Callable[[], None],
    ) -> None:
        self._write = write
        self._delay = max(delay, 0.0)
        self._on_written = on_written
        self._items: list[T] = []
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
            try:
                await self._write(items)
            except Exception as exc:  # keep the results; the database may come back
                self._items[:0] = items
                self._ready.set()
                failures += 1
                logger.warning("writing %d job results failed (%s); retrying", len(items), exc)
                await asyncio.sleep(min(30.0, 0.1 * 2**failures))
                continue
            failures = 0
            self._on_written()
            if not self._items:
                self._idle.set()

    @property
    def idle(self) -> bool:
        """Nothing waits to be written."""
        return self._idle.is_set()

    async def drained(self) -> None:
        """Return once everything added so far has been written."""
        await self._idle.wait()


class Completer:
    """Turns outcomes into writes (see the module docs)."""

    def __init__(
        self,
        *,
        complete: Callable[[list[int]], Awaitable[None]],
        fail: Callable[[list[Failure]], Awaitable[None]],
        return_jobs: Callable[[list[int]], Awaitable[None]],
        complete_delay: float,
        fail_delay: float,
        on_written: Callable[[], None],
        emit: Emit,
        wants: Callable[[EventName], bool],
        logger: logging.Logger,
    ) -> None:
        self._completions: Batcher[int] = Batcher(complete, complete_delay, on_written)
        self._failures: Batcher[Failure] = Batcher(fail, fail_delay, on_written)
        self._returns: Batcher[int] = Batcher(return_jobs, 0.0, on_written)
        self._emit = emit
        self._wants = wants
        self._logger = logger

    def report(self, outcome: Outcome) -> None:
        """Queue the write for ``outcome`` and announce it."""
        job, error, duration = outcome.job, outcome.error, outcome.duration
        if error is None:
            self._completions.add(job.id)
            if self._wants("job:success"):
                self._emit("job:success", job=job, duration=duration)
        else:
            self._report_failure(outcome, error)
        if self._wants("job:complete"):
            self._emit("job:complete", job=job, error=error, duration=duration)

    def _report_failure(self, outcome: Outcome, error: BaseException) -> None:
        job, duration = outcome.job, outcome.duration
        permanent = isinstance(error, PermanentFailure)
        message = encode_error(error)
        self._failures.add(Failure(job.id, message, outcome.replacement, permanent))
        self._logger.warning(
            "job %s (%s) attempt %d/%d failed: %s",
            job.id,
            job.task_identifier,
            job.attempts,
            job.max_attempts,
            message,
        )
        self._emit("job:error", job=job, error=error, duration=duration)
        if permanent or job.attempts >= job.max_attempts:
            self._emit("job:failed", job=job, error=error, duration=duration)

    def give_back(self, ids: list[int]) -> None:
        """Queue jobs fetched but never started for return (their attempt given back)."""
        self._returns.extend(ids)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Write results until cancelled."""
        async with anyio.create_task_group() as group:
            for batcher in self._batchers():
                group.start_soon(batcher.run, self._logger)
            task_status.started()

    def _batchers(self) -> tuple[Batcher[Any], ...]:
        return (self._completions, self._failures, self._returns)

    @property
    def idle(self) -> bool:
        """Nothing waits to be written."""
        return all(batcher.idle for batcher in self._batchers())

    async def drained(self) -> None:
        """Return once everything reported so far has been written."""
        while not self.idle:
            for batcher in self._batchers():
                await batcher.drained()
