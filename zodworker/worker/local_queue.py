"""The local queue: fetch jobs, hold them, hand them to idle slots.

One fetch loop locks jobs with a single statement (handed in as ``fetch(n)``; the database
makes it ``FOR UPDATE SKIP LOCKED``, one job per named queue), sized to the idle slots, or to
``local_queue_size`` when the pool keeps a buffer, and hands them straight to slots waiting
in :meth:`LocalQueue.take`. It fetches again when

* a notification says jobs were added (:meth:`LocalQueue.nudge`),
* a slot frees up while more jobs may be waiting,
* results were written (their named queues are free again),
* ``poll_interval`` passes (future ``run_at``, retries, lost notifications).

A fetch that returns fewer jobs than asked means "no more for now" until one of those
happens; ``local_queue_refetch_delay`` can hold the next fetch back a little. Buffered jobs
not started within ``local_queue_ttl`` are given back (unlocked, attempt returned) so other
pools can run them. ``max_contiguous_errors`` failed fetches in a row are fatal. In *once*
mode (``run_once``) the loop ends the pool when nothing is due, running or being written.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable

import anyio
from anyio.abc import TaskStatus

from ..config import WorkerOptions
from ..job import Job

__all__ = ["LocalQueue"]


class LocalQueue:
    """The fetch loop and the buffer between it and the slots (see the module docs)."""

    def __init__(
        self,
        *,
        fetch: Callable[[int], Awaitable[list[Job]]],
        give_back: Callable[[list[int]], None],
        options: WorkerOptions,
        once: bool,
        idle: Callable[[], bool],
        results_pending: Callable[[], bool],
        results_written: Callable[[], Awaitable[None]],
        on_fatal: Callable[[BaseException], None],
        on_finished: Callable[[], None],
        emit: Callable[..., None],
        logger: logging.Logger,
    ) -> None:
        self._fetch = fetch
        self._give_back = give_back
        self._options = options
        self._once = once
        self._idle = idle
        self._results_pending = results_pending
        self._results_written = results_written
        self._on_fatal = on_fatal
        self._on_finished = on_finished
        self._emit = emit
        self._logger = logger
        self._buffer: deque[tuple[float, Job]] = deque()
        self._waiting: deque[asyncio.Future[Job | None]] = deque()
        self._wake = asyncio.Event()
        self._maybe_more = True
        self._stopping = False

    @property
    def buffered(self) -> int:
        """Jobs fetched and held, not started yet."""
        return len(self._buffer)

    @property
    def waiting(self) -> int:
        """Slots waiting for a job."""
        return len(self._waiting)

    def nudge(self) -> None:
        """More jobs may be available: fetch soon."""
        self._maybe_more = True
        self._wake.set()

    async def take(self) -> Job | None:
        """The next job for a slot; None once the queue is stopping."""
        if self._stopping:
            return None
        if self._buffer:
            return self._buffer.popleft()[1]
        future: asyncio.Future[Job | None] = asyncio.get_running_loop().create_future()
        self._waiting.append(future)
        if self._maybe_more:
            self._wake.set()
        return await future

    def after_job(self) -> None:
        """A slot finished a job: look for the next ones if the buffer is empty."""
        if not self._buffer and (self._maybe_more or self._once):
            self._wake.set()

    def stop(self) -> None:
        """Stop fetching; waiting slots get None and exit."""
        self._stopping = True
        self.nudge()
        while self._waiting:
            future = self._waiting.popleft()
            if not future.done():
                future.set_result(None)

    def drain(self) -> list[int]:
        """Empty the buffer; return the ids of the jobs that were in it."""
        ids = [job.id for _, job in self._buffer]
        self._buffer.clear()
        return ids

    def _want(self) -> int:
        """How many jobs to fetch now."""
        if self._stopping:
            return 0
        size = self._options.local_queue_size
        if size > 0:
            return size if not self._buffer and self._waiting else 0
        return len(self._waiting) - len(self._buffer)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """The fetch loop; returns when the queue stops (or, in once mode, runs dry)."""
        task_status.started()
        options = self._options
        errors = 0
        last_partial = 0.0
        while not self._stopping:
            self._wake.clear()
            if self._once:
                self._maybe_more = True  # draining: look again after every job
            want = self._want()
            gap = options.local_queue_refetch_delay - (time.monotonic() - last_partial)
            if want > 0 and self._maybe_more and gap <= 0:
                try:
                    self._emit("worker:getJob:start")
                    jobs = await self._fetch(want)
                except Exception as exc:
                    errors += 1
                    if self._fetch_failed(exc, errors):
                        return
                    await asyncio.sleep(min(30.0, 0.1 * 2**errors))
                    continue
                errors = 0
                if len(jobs) < want and not self._wake.is_set():  # keep a wake-up meanwhile
                    self._maybe_more = False
                    last_partial = time.monotonic()
                if jobs:
                    self._offer(jobs)
                elif await self._ran_dry():
                    return
                continue
            timeout = options.poll_interval if gap <= 0 else min(options.poll_interval, gap)
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except TimeoutError:
                self._maybe_more = True
            self._expire_buffered()

    def _fetch_failed(self, exc: Exception, errors: int) -> bool:
        """Report a failed fetch; True when it was one too many (the pool stops)."""
        self._emit("worker:getJob:error", error=exc)
        self._logger.error("fetching jobs failed (%d in a row): %s", errors, exc)
        if errors < self._options.max_contiguous_errors:
            return False
        self._emit("worker:fatalError", error=exc)
        self._on_fatal(exc)
        return True

    async def _ran_dry(self) -> bool:
        """Nothing was fetched. True when, in once mode, there is nothing left to do."""
        self._emit("worker:getJob:empty")
        if not (self._once and self._idle() and not self._buffer):
            return False
        if self._results_pending():
            # results still being written hold their queues; look again after
            await self._results_written()
            return False
        self._on_finished()
        return True

    def _offer(self, jobs: list[Job]) -> None:
        now = time.monotonic()
        for job in jobs:
            while self._waiting:
                future = self._waiting.popleft()
                if not future.done():
                    future.set_result(job)
                    break
            else:
                self._buffer.append((now, job))

    def _expire_buffered(self) -> None:
        """Give back buffered jobs older than local_queue_ttl, so other pools can run them."""
        if not self._buffer:
            return
        limit = time.monotonic() - self._options.local_queue_ttl
        expired: list[int] = []
        while self._buffer and self._buffer[0][0] < limit:
            expired.append(self._buffer.popleft()[1].id)
        if expired:
            self._give_back(expired)
