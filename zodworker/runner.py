"""The worker pool: fetch jobs, run their handlers, report the results.

A job inside a pool moves through these states::

    fetched  (locked in the database by this pool, held in the local buffer)
      |-> returned   not started before shutdown or local_queue_ttl: unlocked, attempt given back
      '-> running    a slot runs its handler (at most ``concurrency`` at once)
            '-> reported  queued for the next batched complete / fail write
                  '-> written  deleted (success) or rescheduled with backoff (failure)

One fetcher locks jobs with a single ``FOR UPDATE SKIP LOCKED`` statement, sized to the idle
slots (or to ``local_queue_size``), and hands them straight to waiting slots. It wakes on
LISTEN/NOTIFY, when a slot frees up while more jobs may be waiting, after results are
written (their queues are free again), and every ``poll_interval``. Results are written by two
batchers (complete, fail) that send everything gathered while the previous write was in
flight. A heartbeat row per pool lets any pool release the locks of a pool that died.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
import signal
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Generic, TypeVar

import anyio
import msgspec
import psycopg

from .errors import ConfigError, PermanentFailure, WorkerError
from .events import EventName
from .helpers import JobHelpers
from .job import Job
from .migrate import migrate
from .options import WorkerOptions
from .store import Store
from .tasks import Handler, validate_task_list
from .threads import DaemonThreads
from .worker_store import Failure, WorkerStore, encode_error, open_pool

__all__ = ["Task", "WorkerPool", "resolve_connection", "run", "run_once"]

T = TypeVar("T")
_decode_notification = msgspec.json.Decoder(dict[str, Any]).decode


@dataclass(frozen=True, slots=True)
class Task:
    """A handler with per-task settings. A task list may map identifiers to a plain handler
    or to a :class:`Task`."""

    handler: Handler
    timeout: float | None = None
    """Seconds; when exceeded the handler is cancelled (async) or abandoned (sync, it gets
    its abort signal) and the job fails with a timeout error, so it retries."""


@dataclass(slots=True)
class _Run:
    """A job a slot is running. ``cancelled_for`` is set when we cancel it ourselves."""

    job: Job
    task: asyncio.Task[Any]
    helpers: JobHelpers
    cancelled_for: str | None = None


@dataclass(slots=True)
class _Runnable:
    handler: Handler
    timeout: float | None
    is_async: bool


def resolve_connection(given: str | None) -> str:
    """``given``, else ``DATABASE_URL``, else the embedded PostgreSQL's URL (started)."""
    import os

    if given:
        return given
    env = os.environ.get("DATABASE_URL")
    if env:
        return env
    from .embedded import start_embedded

    url = start_embedded()
    logging.getLogger("zodworker").info("using the embedded PostgreSQL at %s", url)
    return url


def _compile_tasks(tasks: Mapping[str, Handler | Task]) -> dict[str, _Runnable]:
    plain = {name: (t.handler if isinstance(t, Task) else t) for name, t in tasks.items()}
    validate_task_list(plain)
    compiled = {}
    for name, t in tasks.items():
        timeout = t.timeout if isinstance(t, Task) else None
        if timeout is not None and not (isinstance(timeout, (int, float)) and timeout > 0):
            raise ConfigError(f"tasks[{name!r}].timeout", "must be a positive number of seconds")
        handler = plain[name]
        is_async = inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(
            getattr(handler, "__call__", None)  # noqa: B004  # callable objects
        )
        compiled[name] = _Runnable(handler, timeout, is_async)
    return compiled


class _Batcher(Generic[T]):
    """Collects items and writes them in batches: one write in flight at a time, the next
    one carrying everything that arrived meanwhile (after ``delay`` seconds, if set)."""

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
        self._items.append(item)
        self._idle.clear()
        self._ready.set()

    async def run(self, logger: logging.Logger) -> None:
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


class WorkerPool:
    """Runs jobs from one graphile-worker schema. Use :func:`run` / :func:`run_once`, or
    ``async with WorkerPool(tasks, options) as pool: await pool.wait()``."""

    def __init__(self, tasks: Mapping[str, Handler | Task], options: WorkerOptions) -> None:
        self.options = options
        self.events = options.events
        self.pool_id = options.pool_id
        self.logger = options.logger
        self._tasks = _compile_tasks(tasks)
        self._once = False
        self._main: asyncio.Task[None] | None = None
        self._started = asyncio.Event()
        self._stopping = False
        self._forceful = False
        self._fatal: BaseException | None = None
        self.exit_code = 0
        # local buffer of fetched jobs, and slots waiting for one
        self._buffer: deque[tuple[float, Job]] = deque()
        self._waiting: deque[asyncio.Future[Job | None]] = deque()
        self._running: dict[int, _Run] = {}
        self._wake = asyncio.Event()
        self._maybe_more = True
        self._task_ids: list[int] = []
        self._stop_requested = asyncio.Event()
        self._threads = DaemonThreads(f"{self.pool_id}-task")

    # ---------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Connect, migrate (unless disabled), and start running jobs. Idempotent."""
        if self._main is None:
            self._main = asyncio.get_running_loop().create_task(self._run_pool())
        started = asyncio.ensure_future(self._started.wait())
        await asyncio.wait({started, self._main}, return_when=asyncio.FIRST_COMPLETED)
        started.cancel()
        if self._main.done():
            await self._main  # raises the start-up error

    async def stop(self, *, forceful: bool = False) -> None:
        """Stop fetching and wait for running jobs (graceful), or fail them so they retry
        (forceful). Idempotent; safe before :meth:`start`."""
        self._begin_shutdown(forceful=forceful)
        if self._main is not None:
            await asyncio.wait({self._main})
        if self._fatal is None and self._main is not None and not self._main.cancelled():
            exc = self._main.exception()
            if exc is not None:
                raise exc

    async def wait(self) -> None:
        """Wait until the pool has stopped; raise :class:`WorkerError` if it died."""
        if self._main is None:
            return
        await asyncio.wait({self._main})
        if self._fatal is not None:
            raise WorkerError(str(self._fatal)) from self._fatal
        self._main.result()

    async def __aenter__(self) -> WorkerPool:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def replace_tasks(self, tasks: Mapping[str, Handler | Task]) -> None:
        """Swap the task list (watch mode). Takes effect from the next fetch."""
        self._tasks = _compile_tasks(tasks)
        self._task_ids = []  # re-registered by the fetcher
        self._nudge()

    @staticmethod
    def _cancel(run: _Run, reason: str) -> None:
        """Give the handler its abort signal, then cancel it (abandoning a sync one)."""
        if run.cancelled_for is None:
            run.cancelled_for = reason
            run.helpers.abort_signal._set(reason)
            run.task.cancel()

    def _begin_shutdown(self, *, forceful: bool) -> None:
        if self._main is not None and self._main.done():
            return  # already stopped
        if forceful and not self._forceful:
            self._forceful = True
            self._emit("pool:forcefulShutdown")
            self._emit("forcefulShutdown")
            for run in list(self._running.values()):
                self._cancel(run, "forceful shutdown")
        if self._stopping:
            return
        self._stopping = True
        self._stop_requested.set()
        self._emit("pool:gracefulShutdown")
        self._emit("gracefulShutdown")
        self._nudge()
        while self._waiting:  # idle slots exit
            fut = self._waiting.popleft()
            if not fut.done():
                fut.set_result(None)

    def _emit(self, name: EventName, **fields: Any) -> None:
        self.events.emit(name, self.pool_id, **fields)

    def _nudge(self) -> None:
        self._maybe_more = True
        self._wake.set()

    # ---------------------------------------------------------------- main

    async def _run_pool(self) -> None:
        opts = self.options
        conninfo = resolve_connection(opts.connection)
        pool = open_pool(
            conninfo,
            max_size=opts.max_pool_size,
            prepared_statements=opts.use_prepared_statements,
            name=self.pool_id,
        )
        beat_pool = open_pool(
            conninfo,
            max_size=1,
            prepared_statements=opts.use_prepared_statements,
            name=f"{self.pool_id}-heartbeat",
        )
        await pool.open(wait=True, timeout=30)
        try:
            if opts.migrate:
                async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as c:
                    await migrate(c, schema=opts.schema)
            store = WorkerStore(pool, opts.schema, self.pool_id)
            self._store = store
            self._pool = pool
            self._add_store = Store(opts.schema)
            # Liveness gets its own connection: handlers holding every pooled connection
            # must not make a live pool look dead.
            await beat_pool.open(wait=True, timeout=30)
            beats = WorkerStore(beat_pool, opts.schema, self.pool_id)
            await beats.register()
            self._emit("pool:create")
            # Register the tasks before reporting "started": a job enqueued right after
            # start() must find this pool ready to fetch it.
            self._task_ids = await store.register_tasks(list(self._tasks))
            self._completions = _Batcher(store.complete, opts.complete_job_batch_delay, self._nudge)
            self._failures = _Batcher(store.fail, opts.fail_job_batch_delay, self._nudge)
            async with anyio.create_task_group() as background:
                background.start_soon(self._completions.run, self.logger)
                background.start_soon(self._failures.run, self.logger)
                background.start_soon(self._heartbeat_loop, beats)
                if opts.sweep_stale_locks:
                    background.start_soon(self._sweep_loop, store)
                if not self._once:
                    background.start_soon(self._listen_loop, conninfo)
                async with anyio.create_task_group() as work:
                    for index in range(opts.concurrency):
                        work.start_soon(self._slot, index)
                    work.start_soon(self._fetch_loop, store)
                    background.start_soon(self._abort_after_timeout)
                    self._started.set()
                await self._return_buffered(store)
                await self._completions.drained()
                await self._failures.drained()
                background.cancel_scope.cancel()
            await beats.unregister()
        finally:
            self._threads.close()
            self._emit("pool:release")
            await pool.close()
            await beat_pool.close()
            self._emit("stop")

    async def _abort_after_timeout(self) -> None:
        """Once a graceful shutdown has lasted graceful_shutdown_abort_timeout, give running
        handlers their abort signal."""
        await self._stop_requested.wait()
        await asyncio.sleep(self.options.graceful_shutdown_abort_timeout)
        for run in list(self._running.values()):
            run.helpers.abort_signal._set("graceful shutdown timed out")

    async def _return_buffered(self, store: WorkerStore) -> None:
        """Give back fetched jobs that never started (attempts - 1)."""
        ids = [job.id for _, job in self._buffer]
        self._buffer.clear()
        if ids:
            await store.return_jobs(ids)

    # ---------------------------------------------------------------- fetching

    async def _forbidden_flags(self) -> list[str]:
        flags = self.options.forbidden_flags
        if flags is None:
            return []
        if callable(flags):
            value = flags()
            if inspect.isawaitable(value):
                value = await value
            return list(value or ())
        return list(flags)

    def _want(self) -> int:
        """How many jobs to fetch now."""
        if self._stopping:
            return 0
        size = self.options.local_queue_size
        if size > 0:
            return size if not self._buffer and self._waiting else 0
        return len(self._waiting) - len(self._buffer)

    async def _fetch_loop(self, store: WorkerStore) -> None:
        opts = self.options
        errors = 0
        last_partial = 0.0
        while not self._stopping:
            self._wake.clear()
            if self._once:
                self._maybe_more = True  # draining: look again after every job
            want = self._want()
            gap = opts.local_queue_refetch_delay - (time.monotonic() - last_partial)
            if want > 0 and self._maybe_more and gap <= 0:
                try:
                    if not self._task_ids:
                        self._task_ids = await store.register_tasks(list(self._tasks))
                    self._emit("worker:getJob:start")
                    forbidden = await self._forbidden_flags()
                    jobs = await store.get_jobs(self._task_ids, forbidden, want)
                except Exception as exc:
                    errors += 1
                    self._emit("worker:getJob:error", error=exc)
                    self.logger.error("fetching jobs failed (%d in a row): %s", errors, exc)
                    if errors >= opts.max_contiguous_errors:
                        self._fatal = exc
                        self._emit("worker:fatalError", error=exc)
                        self._begin_shutdown(forceful=False)
                        return
                    await asyncio.sleep(min(30.0, 0.1 * 2**errors))
                    continue
                errors = 0
                if len(jobs) < want and not self._wake.is_set():  # keep a wake-up meanwhile
                    self._maybe_more = False
                    last_partial = time.monotonic()
                now = time.monotonic()
                for job in jobs:
                    self._offer(now, job)
                if not jobs:
                    self._emit("worker:getJob:empty")
                    if self._once and not self._running and not self._buffer:
                        if not (self._completions.idle and self._failures.idle):
                            # results still being written hold their queues; look again after
                            await self._completions.drained()
                            await self._failures.drained()
                            continue
                        self._begin_shutdown(forceful=False)
                        return
                continue
            timeout = opts.poll_interval if gap <= 0 else min(opts.poll_interval, gap)
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except TimeoutError:
                self._maybe_more = True
            self._expire_buffered()

    def _offer(self, fetched_at: float, job: Job) -> None:
        while self._waiting:
            fut = self._waiting.popleft()
            if not fut.done():
                fut.set_result(job)
                return
        self._buffer.append((fetched_at, job))

    def _expire_buffered(self) -> None:
        """Return buffered jobs older than local_queue_ttl, so other pools can run them."""
        if not self._buffer:
            return
        limit = time.monotonic() - self.options.local_queue_ttl
        expired = []
        while self._buffer and self._buffer[0][0] < limit:
            expired.append(self._buffer.popleft()[1].id)
        if expired:
            asyncio.get_running_loop().create_task(self._store.return_jobs(expired))

    # ---------------------------------------------------------------- running

    async def _slot(self, index: int) -> None:
        self._emit("worker:create", worker=index)
        loop = asyncio.get_running_loop()
        while not self._stopping:  # graceful shutdown starts nothing new
            if self._buffer:
                await self._run_job(self._buffer.popleft()[1])
                continue
            fut: asyncio.Future[Job | None] = loop.create_future()
            self._waiting.append(fut)
            if self._maybe_more:
                self._wake.set()
            job = await fut
            if job is None:
                break
            await self._run_job(job)
        self._emit("worker:stop", worker=index)
        self._emit("worker:release", worker=index)

    async def _run_job(self, job: Job) -> None:
        runnable = self._tasks.get(job.task_identifier)
        helpers = JobHelpers(
            job,
            self.logger,
            self._pool,
            self._add_store,
            threads=runnable is not None and not runnable.is_async,
        )
        events = self.events
        if events.wants("job:start"):
            self._emit("job:start", job=job)
        started = time.perf_counter()
        error: BaseException | None = None
        result: Any = None
        if runnable is None:
            error = LookupError(f"unsupported task {job.task_identifier!r}")
        else:
            task = asyncio.current_task()
            assert task is not None
            run = _Run(job, task, helpers)
            self._running[job.id] = run
            timer = (
                asyncio.get_running_loop().call_later(
                    runnable.timeout, self._cancel, run, "timeout"
                )
                if runnable.timeout
                else None
            )
            try:
                result = await self._call(runnable, job, helpers)
            except asyncio.CancelledError:
                if run.cancelled_for is None:
                    raise  # not ours: let it propagate
            except Exception as exc:
                error = exc
            finally:
                if timer is not None:
                    timer.cancel()
                del self._running[job.id]
            if run.cancelled_for is not None:  # even if the handler swallowed the cancel
                if task.cancelling():
                    task.uncancel()
                if run.cancelled_for == "timeout":
                    error = TimeoutError(f"task timed out after {runnable.timeout}s")
                    self._emit("job:timeout", job=job)
                else:
                    error = WorkerError("forceful shutdown: the job was interrupted")
        duration = time.perf_counter() - started
        replacement: Any = msgspec.UNSET
        if error is None and isinstance(job.payload, list) and isinstance(result, list):
            # A batch job may report per element: exception elements failed, keep only those.
            failed = [
                item
                for item, outcome in zip(job.payload, result, strict=False)
                if isinstance(outcome, BaseException)
            ]
            if failed:
                replacement = failed
                error = RuntimeError(
                    f"{len(failed)} of {len(job.payload)} batch elements failed: "
                    + "; ".join(encode_error(o) for o in result if isinstance(o, BaseException))
                )
        if error is None:
            self._completions.add(job.id)
            if events.wants("job:success"):
                self._emit("job:success", job=job, duration=duration)
        else:
            permanent = isinstance(error, PermanentFailure)
            self._failures.add(Failure(job.id, encode_error(error), replacement, permanent))
            self.logger.warning(
                "job %s (%s) attempt %d/%d failed: %s",
                job.id,
                job.task_identifier,
                job.attempts,
                job.max_attempts,
                encode_error(error),
            )
            self._emit("job:error", job=job, error=error, duration=duration)
            if permanent or job.attempts >= job.max_attempts:
                self._emit("job:failed", job=job, error=error, duration=duration)
        if events.wants("job:complete"):
            self._emit("job:complete", job=job, error=error, duration=duration)
        if not self._buffer and self._maybe_more:
            self._wake.set()
        if self._once and not self._buffer:
            self._wake.set()

    async def _call(self, runnable: _Runnable, job: Job, helpers: JobHelpers) -> Any:
        if runnable.is_async:
            return await runnable.handler(job.payload, helpers)
        return await self._threads.run(runnable.handler, job.payload, helpers)

    # ---------------------------------------------------------------- background

    async def _listen_loop(self, conninfo: str) -> None:
        attempts = 0
        while not self._stopping:
            self._emit("pool:listen:connecting", attempts=attempts)
            try:
                conn = await psycopg.AsyncConnection.connect(conninfo, autocommit=True)
                async with conn:
                    await conn.execute('LISTEN "jobs:insert"; LISTEN "worker:migrate"')
                    attempts = 0
                    self._emit("pool:listen:success")
                    self._nudge()  # catch up on anything added while we were not listening
                    try:
                        async for note in conn.notifies():
                            self._on_notification(note.channel, note.payload)
                    finally:
                        self._emit("pool:listen:release")
            except Exception as exc:
                attempts += 1
                self._emit("pool:listen:error", error=exc, attempts=attempts)
                delay = min(60.0, 0.5 * 2 ** min(attempts, 7)) * (0.5 + random.random() / 2)
                self.logger.warning(
                    "LISTEN connection lost (%s); reconnecting in %.1fs", exc, delay
                )
                await asyncio.sleep(delay)

    def _on_notification(self, channel: str, payload: str) -> None:
        try:
            data = _decode_notification(payload) if payload else {}
        except msgspec.DecodeError:
            data = {}
        if self.events.wants("pool:listen:notification"):
            self._emit("pool:listen:notification", channel=channel, payload=data)
        if channel == "jobs:insert":
            count = data.get("count", 1)
            if not isinstance(count, (int, float)) or count > 0:
                self._nudge()
        elif channel == "worker:migrate" and data.get("breaking"):
            self.logger.warning(
                "breaking migration to schema revision %s detected; shutting down",
                data.get("migrationNumber"),
            )
            self.exit_code = 57
            self._begin_shutdown(forceful=False)

    async def _heartbeat_loop(self, store: WorkerStore) -> None:
        opts = self.options
        while True:
            await asyncio.sleep(opts.heartbeat_interval)
            try:
                if not await store.heartbeat():
                    self.logger.error(
                        "this pool was presumed dead (no heartbeat for %ss) and its locks were "
                        "released; re-registering",
                        opts.recovery_timeout,
                    )
                    await store.register()
                released = await store.reap_dead_pools(opts.recovery_timeout)
            except Exception as exc:
                self.logger.warning("heartbeat failed: %s", exc)
                continue
            if released:
                self.logger.warning("released %d jobs of dead pools", len(released))
                self._emit("pool:recovered", job_ids=released)
                self._nudge()

    async def _sweep_loop(self, store: WorkerStore) -> None:
        while True:
            await asyncio.sleep(random.uniform(8 * 60, 10 * 60))
            self._emit("resetLocked:started")
            try:
                await store.reset_stale_locks()
            except Exception as exc:
                self._emit("resetLocked:failure", error=exc)
            else:
                self._emit("resetLocked:success")


def _options(options: WorkerOptions | None, overrides: dict[str, Any]) -> WorkerOptions:
    base = options or WorkerOptions()
    return replace(base, **overrides) if overrides else base


async def run(
    tasks: Mapping[str, Handler | Task], options: WorkerOptions | None = None, **overrides: Any
) -> WorkerPool:
    """Start a long-lived worker pool and return it (``await pool.wait()`` / ``stop()``).

    Keyword arguments override fields of ``options``. With ``handle_signals`` (default) the
    first SIGINT/SIGTERM shuts down gracefully, the second forcefully.
    """
    pool = WorkerPool(tasks, _options(options, overrides))
    await pool.start()
    if pool.options.handle_signals:
        _install_signal_handlers(pool)
    return pool


async def run_once(
    tasks: Mapping[str, Handler | Task], options: WorkerOptions | None = None, **overrides: Any
) -> None:
    """Run every job that is due now, then return."""
    pool = WorkerPool(tasks, _options(options, overrides))
    pool._once = True
    await pool.start()
    await pool.wait()


def _install_signal_handlers(pool: WorkerPool) -> None:
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)

    def on_signal(signum: int) -> None:
        forceful = pool._stopping
        pool.logger.warning(
            "%s received: %s shutdown",
            signal.Signals(signum).name,
            "forceful" if forceful else "graceful (send again to force)",
        )
        pool._begin_shutdown(forceful=forceful)

    for sig in signals:
        loop.add_signal_handler(sig, on_signal, sig)

    def remove(_: object) -> None:
        for sig in signals:
            loop.remove_signal_handler(sig)

    assert pool._main is not None
    pool._main.add_done_callback(remove)
