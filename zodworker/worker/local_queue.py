"""The local queue: fetch jobs, hold them, hand them to idle slots.

One fetch loop locks jobs with a single statement (handed in as ``fetch(n)``; the database
makes it ``FOR UPDATE SKIP LOCKED``, one job per named queue), sized to the idle slots, or to
``local_queue_size`` when the pool keeps a buffer, and hands them straight to slots waiting
in :meth:`LocalQueue.take`. It fetches again when

* a notification says jobs were added (:meth:`LocalQueue.nudge`),
* a slot frees up while more jobs may be waiting,
* results were written that may free jobs (a named queue released, jobs given back or
  snoozed: the completer says when),
* ``poll_interval`` passes (future ``run_at``, retries, lost notifications).

Fetch-ahead (``local_queue_fetch_ahead``) keeps the database busy while the pool runs the
batch it has: the next batch is fetched while the buffer still holds as many jobs as the
slots would start in about two fetches' time (the rate jobs were handed out since the
previous fetch times how long that fetch took, times two), at most one batch. A pool busy
with quick jobs thus fetches batch N+1 as soon as batch N arrives; a pool of slow jobs, or
one that was idle, fetches only when its buffer is empty, as without fetch-ahead, and so
holds back no more jobs from other pools than it needs. In ``"auto"`` mode (the default)
only a pool that is alone fetches ahead (it counts the live leases at start and every
10 s): with several pools, each one's fetches keep the database busy while the others run
jobs, and one more fetch in flight per pool only adds lock contention at the head of the
jobs index (measured: 2 processes on 2 cores ran 12% slower with it). ``"always"`` and
``"never"`` override that.

The batch follows the pace (:func:`next_batch`), with or without fetch-ahead: when the slots
start a whole batch in about two fetches' time and the fetch came back full, the next batch
is twice as big, up to ``local_queue_max_size``; it halves when the pace drops below half a
batch, and is ``local_queue_size`` again after a fetch that found fewer jobs than it asked
for. The buffer holds at most twice the batch (one batch without fetch-ahead). A fetch
costs more than the rows it claims (a round trip, planning and, once many jobs were
claimed, a walk over the dead index entries they left at the head of the jobs index until
vacuum clears them), so quick jobs run faster in bigger batches, and several pools too
(figures in docs/performance.md); slow jobs never make the pace, so their pools fetch
``local_queue_size``.

A fetch that returns fewer jobs than asked means "no more for now" until one of those
happens; ``local_queue_refetch_delay`` can hold the next fetch back a little. Buffered jobs
not started within ``local_queue_ttl`` are given back (unlocked, attempt returned) so other
pools can run them. In *once* mode (``run_once``) the loop ends the pool when nothing is
due, running or being written.

Faults: ``max_contiguous_errors`` failed fetches in a row are fatal; the backoff between
them ends at once on shutdown. A fetch that failed on a lost connection may have locked jobs
whose answer never came: before fetching again the queue calls ``reconcile()``, which gives
back whatever the pool's lease holds that the pool does not know about. While the pool has
no valid lease the queue is paused, and jobs that arrive under a lease that is no longer the
pool's (``lease()`` is the one it holds, None while it holds none) are given back instead of
run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence

import anyio
from anyio.abc import TaskStatus

from ..config import WorkerOptions
from ..db.rows import is_connection_error
from ..errors import ConfigError
from ..job import Job

__all__ = ["LocalQueue", "next_batch"]


def next_batch(batch: int, base: int, cap: int, *, pace: float, full: bool) -> int:
    """The size of a pool's next fetch, after one of ``batch`` jobs that came back
    ``full`` (or not), when the slots start ``pace`` jobs in about two fetches' time: twice
    ``batch`` when the pace keeps up with it, half when it is below half a batch, ``base``
    (``local_queue_size``) after a fetch that found fewer jobs than asked; always within
    ``base`` .. ``cap`` (``local_queue_max_size``)."""
    if not full:
        return base
    if pace >= batch:
        return min(cap, 2 * batch)
    if 2 * pace < batch:
        return max(base, batch // 2)
    return batch


class LocalQueue:
    """The fetch loop and the buffer between it and the slots (see the module docs)."""

    def __init__(
        self,
        *,
        fetch: Callable[[int], Awaitable[Sequence[Job]]],
        give_back: Callable[[list[Job]], None],
        lease: Callable[[], str | None],
        reconcile: Callable[[], Awaitable[None]],
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
        self._lease = lease
        self._reconcile = reconcile
        self._must_reconcile = False
        self._paused = False
        self._stopped = asyncio.Event()
        self._options = options
        self._once = once
        self._idle = idle
        self._results_pending = results_pending
        self._results_written = results_written
        self._on_fatal = on_fatal
        self._on_finished = on_finished
        self._emit = emit
        self._logger = logger
        # (when fetched, the fetched batch, the job's place in it): a job is decoded when a
        # slot takes it (the batch may be rows read lazily, see zodworker.db.rows.LazyRows)
        self._buffer: deque[tuple[float, Sequence[Job], int]] = deque()
        self._waiting: deque[asyncio.Future[Job | None]] = deque()
        self._wake = asyncio.Event()
        self._maybe_more = True
        self._stopping = False
        self._ahead = 0  # fetch again while the buffer holds at most this many jobs
        self._handed = 0  # jobs handed to slots so far
        self._handed_mark = 0  # ... at the end of the previous fetch
        self._mark_time = 0.0  # when the previous fetch ended
        self._alone = True  # no other live pool (fetch-ahead is for a lone pool)
        self._batch = options.local_queue_size  # jobs a fetch asks for (see next_batch)

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
        while self._buffer:
            _, batch, place = self._buffer.popleft()
            job = self._decoded(batch, place)
            if job is None:
                continue
            self._handed += 1
            if len(self._buffer) <= self._ahead and self._maybe_more:
                self._wake.set()  # fetch ahead
            return job
        future: asyncio.Future[Job | None] = asyncio.get_running_loop().create_future()
        self._waiting.append(future)
        if self._maybe_more:
            self._wake.set()
        return await future

    def after_job(self) -> None:
        """A slot finished a job: look for the next ones if the buffer is empty."""
        if not self._buffer and (self._maybe_more or self._once):
            self._wake.set()

    def set_live_pools(self, count: int) -> None:
        """How many pools hold a live lease, this one included (fetch-ahead: module docs)."""
        self._alone = count <= 1
        if not self._alone and self._options.local_queue_fetch_ahead == "auto":
            self._ahead = 0

    def pause(self) -> None:
        """Fetch nothing until :meth:`resume` (the pool has no valid lease)."""
        self._paused = True

    def resume(self) -> None:
        """Fetch again."""
        self._paused = False
        self.nudge()

    def stop(self) -> None:
        """Stop fetching; waiting slots get None and exit."""
        self._stopping = True
        self._stopped.set()
        self.nudge()
        while (future := self._next_waiting()) is not None:
            future.set_result(None)

    def drain(self) -> list[Job]:
        """Empty the buffer; return the jobs that were in it."""
        jobs = [self._decoded(batch, place) for _, batch, place in self._buffer]
        self._buffer.clear()
        return [job for job in jobs if job is not None]

    def buffered_ids(self) -> set[int]:
        """Ids of the jobs held in the buffer."""
        jobs = (self._decoded(batch, place) for _, batch, place in self._buffer)
        return {job.id for job in jobs if job is not None}

    def _want(self) -> int:
        """How many jobs to fetch now."""
        if self._stopping or self._paused:
            return 0
        size = self._batch
        if size > 0:
            if self._buffer:
                return size if len(self._buffer) <= self._ahead else 0
            return size if self._waiting else 0
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
                    if self._must_reconcile:
                        await self._reconcile()
                        self._must_reconcile = False
                    self._emit("worker:getJob:start", want=want, buffered=len(self._buffer))
                    started = time.monotonic()
                    jobs = await self._fetch(want)
                except Exception as exc:
                    if is_connection_error(exc):  # it may have locked jobs we never saw
                        self._must_reconcile = True
                    errors += 1
                    if self._fetch_failed(exc, errors):
                        return
                    with contextlib.suppress(TimeoutError):  # shutdown ends the backoff
                        await asyncio.wait_for(self._stopped.wait(), min(30.0, 0.1 * 2**errors))
                    continue
                errors = 0
                self._plan_ahead(started, full=len(jobs) >= want)
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

    def _plan_ahead(self, started: float, *, full: bool) -> None:
        """After a fetch: how big the next one is, and how low the buffer may run before it
        (see the module docs); 0, fetching only into an empty buffer, when fetch-ahead is
        off."""
        options = self._options
        if self._batch <= 0:
            return
        now = time.monotonic()
        span = now - self._mark_time
        rate = (self._handed - self._handed_mark) / span if span > 0 else 0.0
        self._handed_mark, self._mark_time = self._handed, now
        pace = 2 * rate * (now - started)  # jobs the slots start in about two fetches' time
        self._batch = next_batch(
            self._batch, options.local_queue_size, options.batch_cap, pace=pace, full=full
        )
        mode = options.local_queue_fetch_ahead
        if mode == "always" or (mode == "auto" and self._alone):
            self._ahead = min(self._batch, int(pace))

    def _fetch_failed(self, exc: Exception, errors: int) -> bool:
        """Report a failed fetch; True when it was one too many (the pool stops)."""
        self._emit("worker:getJob:error", error=exc)
        self._logger.error("fetching jobs failed (%d in a row): %s", errors, exc)
        if errors < self._options.max_contiguous_errors and not isinstance(exc, ConfigError):
            return False  # a ConfigError (a pooler that drops prepared statements) is final
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
        if self._wake.is_set():
            # written or added while the fetch ran (a queue or a limit slot freed after its
            # snapshot): look again
            return False
        self._on_finished()
        return True

    def _offer(self, jobs: Sequence[Job]) -> None:
        now = time.monotonic()
        lease = self._lease()
        claimed = getattr(jobs, "lease", None)  # the lease every job was locked under
        if claimed != lease and any(job.locked_by != lease for job in jobs):
            # a lease lost during the fetch
            self._give_back([job for job in jobs if job.locked_by != lease])
            jobs = [job for job in jobs if job.locked_by == lease]
        for place in range(len(jobs)):
            future = self._next_waiting()
            if future is None:
                self._buffer.append((now, jobs, place))
            elif (job := self._decoded(jobs, place)) is None:
                self._waiting.appendleft(future)  # still waiting for a job
            else:
                future.set_result(job)
                self._handed += 1

    def _next_waiting(self) -> asyncio.Future[Job | None] | None:
        """The first slot still waiting for a job (slots cancelled meanwhile are dropped)."""
        while self._waiting:
            future = self._waiting.popleft()
            if not future.done():
                return future
        return None

    def _decoded(self, batch: Sequence[Job], place: int) -> Job | None:
        """The job at ``place`` of a fetched batch (decoded now, when the batch is read
        lazily), or None when its row cannot be decoded (a payload nested deeper than the
        JSON decoder allows, inserted by other means than zodworker's checked encoder):
        logged, and left locked under this pool's lease, as a failed fetch would leave it."""
        try:
            return batch[place]
        except Exception as exc:
            self._emit("worker:getJob:error", error=exc)
            self._logger.error("a fetched job could not be decoded; left locked: %r", exc)
            return None

    def _expire_buffered(self) -> None:
        """Give back buffered jobs older than local_queue_ttl, so other pools can run them."""
        if not self._buffer:
            return
        limit = time.monotonic() - self._options.local_queue_ttl
        expired: list[Job] = []
        while self._buffer and self._buffer[0][0] < limit:
            _, batch, place = self._buffer.popleft()
            if (job := self._decoded(batch, place)) is not None:
                expired.append(job)
        if expired:
            self._give_back(expired)
