"""The worker pool: composes the parts that fetch jobs, run them and report the results.

::

    listener --nudge--> local_queue --job--> slot: executor.run(job) -> Outcome
                          (limited: fetch)             |
                             ^                         |
                             '------ written <---- completer.report(outcome)
    lease (heartbeat, reaping)     maintenance (4-hour stale-lock sweep)

The pool hands each part plain functions (``fetch``, ``complete``, ``fail``,
``return_jobs``, ``heartbeat``...) bound to :class:`~zodworker.db.worker_store.WorkerStore`;
no part sees SQL or another part's state. A job inside a pool moves through::

    fetched  (locked in the database by this pool, held by the local queue)
      |-> given back   not started before shutdown or local_queue_ttl: unlocked, attempt back
      '-> running      a slot runs its handler (at most ``concurrency`` at once)
            '-> reported  queued for the next batched complete / fail write
                  '-> written  deleted (success) or rescheduled with backoff (failure)

Lifecycle: :meth:`WorkerPool.run` is the structured form (``await group.start(pool.run)``);
:meth:`start` / :meth:`stop` / :meth:`wait` host it for callers without a task group.
:meth:`shutdown` begins a graceful (or forceful) stop without waiting.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import anyio
from anyio.abc import TaskStatus

from ..config import WorkerOptions
from ..db.connect import Database
from ..db.lease import LeaseStore
from ..db.migrate import migrate
from ..db.rows import borrow
from ..db.store import Store
from ..db.worker_store import WorkerStore
from ..errors import WorkerError
from ..events import EventName
from ..job import Job
from ..lifecycle import Host
from .completer import Completer
from .executor import Executor
from .helpers import JobHelpers
from .lease import LeaseKeeper
from .limited import LimitedFetch
from .listener import Listener
from .local_queue import LocalQueue
from .maintenance import pool_loops
from .stats import PoolStats
from .tasks import Handler, Task, compile_tasks
from .threads import DaemonThreads

__all__ = ["PoolStats", "WorkerPool"]


class WorkerPool:
    """Runs jobs from one graphile-worker schema. Use :func:`zodworker.run` /
    :func:`zodworker.run_once`, or ``async with WorkerPool(tasks, options) as pool:
    await pool.wait()``.

    ``database``: the process's shared :class:`~zodworker.db.connect.Database` (opened and
    closed by its owner); without one the pool opens its own from ``options.connection``
    (else ``DATABASE_URL``). ``once``: run what is due now, then stop.
    """

    def __init__(
        self,
        tasks: Mapping[str, Handler | Task],
        options: WorkerOptions,
        *,
        database: Database | None = None,
        once: bool = False,
    ) -> None:
        self.options = options
        self.events = options.events
        self.pool_id = options.pool_id
        self.logger = options.logger
        self.exit_code = 0
        """57 after a breaking migration made the pool stop, else 0."""
        self._database = database or Database.for_options(options)
        self._owns_database = database is None
        self._store = WorkerStore(self._database, self.pool_id)
        self._add_store = Store(options.schema)
        self._once = once
        self._task_ids: list[int] = []
        self._fatal: BaseException | None = None
        self._state: Literal["new", "starting", "running", "stopped"] = "new"
        self._stopping = False
        self._forceful = False
        self._stop_requested = asyncio.Event()
        self._lease_lost = False
        self._threads = DaemonThreads(f"{self.pool_id}-task")
        self._executor = Executor(
            compile_tasks(tasks, record_all=options.history),
            make_helpers=self._helpers,
            threads=self._threads,
            on_timeout=lambda job: self._emit("job:timeout", job=job),
        )
        self._completer = self._make_completer()
        self._queue = self._make_local_queue()
        self._limited = LimitedFetch(
            plain=self._store.get_jobs,
            limited=self._store.get_limited_jobs,
            next_room=self._store.limits_next_room,
            idle_slots=lambda: self._queue.waiting - self._queue.buffered,
            nudge=self._nudge,
            poll_interval=options.poll_interval,
            logger=self.logger,
        )
        self._store.on_limited_written = self._limited.wake
        self._lease = LeaseKeeper(
            LeaseStore(
                self._database,
                heartbeat=options.heartbeat_interval,
                lease=options.recovery_timeout,
                tasks=lambda: list(self._executor.tasks),
                counts=lambda: (self._completer.completed, self._completer.failed),
            ),
            pool_id=self.pool_id,
            interval=options.heartbeat_interval,
            lease=options.recovery_timeout,
            on_lost=self._on_lease_lost,
            on_regained=self._on_lease_regained,
            on_released=self._on_released,
            logger=self.logger,
        )
        self._host = Host(self.run, lambda: self.shutdown(forceful=False))

    def _make_completer(self) -> Completer:
        store, opts = self._store, self.options
        return Completer(
            complete=store.complete,
            fail=store.fail,
            return_jobs=store.return_jobs,
            snooze=store.snooze,
            complete_recorded=store.complete_recorded,
            complete_delay=opts.complete_job_batch_delay,
            fail_delay=opts.fail_job_batch_delay,
            on_written=self._nudge,
            emit=self._emit,
            wants=self.events.wants,
            logger=self.logger,
            log_jobs=opts.log_jobs,
        )

    def _make_local_queue(self) -> LocalQueue:
        completer = self._completer
        return LocalQueue(
            fetch=self._fetch,
            give_back=completer.give_back,
            lease=lambda: None if self._lease_lost else self._store.lease_id,
            reconcile=self._reconcile,
            options=self.options,
            once=self._once,
            idle=lambda: self._executor.running == 0,
            results_pending=lambda: not completer.idle,
            results_written=completer.drained,
            on_fatal=self._on_fatal,
            on_finished=lambda: self.shutdown(forceful=False),
            emit=self._emit,
            logger=self.logger,
        )

    # ---------------------------------------------------------------- public lifecycle

    async def start(self) -> None:
        """Connect, migrate (unless disabled), and start running jobs. Idempotent."""
        await self._host.start()

    async def stop(self, *, forceful: bool = False) -> None:
        """Stop: running jobs finish (graceful) or fail to retry (forceful). Idempotent."""
        self.shutdown(forceful=forceful)
        await self._host.stop()

    async def wait(self) -> None:
        """Wait until the pool has stopped; raise :class:`WorkerError` if it died."""
        await self._host.wait()
        if self._fatal is not None:
            raise WorkerError(str(self._fatal)) from self._fatal

    async def __aenter__(self) -> WorkerPool:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def shutdown(self, *, forceful: bool = False) -> None:
        """Begin a graceful shutdown (nothing new starts; running jobs finish), or a forceful
        one (running jobs are interrupted and fail, so they retry). Returns at once."""
        if self._state == "stopped":
            return
        if forceful and not self._forceful:
            self._forceful = True
            self._emit("pool:forcefulShutdown")
            self._emit("forcefulShutdown")
            self._executor.interrupt_all("forceful shutdown")
        if self._stopping:
            return
        self._stopping = True
        self._stop_requested.set()
        self._emit("pool:gracefulShutdown")
        self._emit("gracefulShutdown")
        self._queue.stop()

    def stats(self) -> PoolStats:
        """How the pool is doing right now."""
        state: Any = self._state
        if self._stopping and state != "stopped":
            state = "stopped" if state == "new" else "stopping"
        return PoolStats(
            state=state,
            concurrency=self.options.concurrency,
            running=self._executor.running,
            buffered=self._queue.buffered,
            idle_slots=self._queue.waiting,
        )

    def when_stopped(self, callback: Callable[[], object]) -> None:
        """Call ``callback()`` once the pool has stopped (the pool must be started)."""
        self._host.done_callback(callback)

    def replace_tasks(self, tasks: Mapping[str, Handler | Task]) -> None:
        """Swap the task list (watch mode). Takes effect from the next fetch."""
        self._executor.tasks = compile_tasks(tasks, record_all=self.options.history)
        self._task_ids = []  # registered again before the next fetch
        self._queue.nudge()

    # ---------------------------------------------------------------- structured run

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Run the pool until it is shut down (the structured form of start/wait)."""
        self._state = "starting"
        try:
            if self._owns_database:
                await self._database.open()
            if self.options.migrate:
                async with borrow(self._database.connections) as conn:
                    await migrate(conn, schema=self.options.schema)
            self._emit("pool:create")
            # Register the tasks before reporting "started": a job enqueued right after
            # start() must find this pool ready to fetch it.
            self._task_ids = await self._store.register_tasks(list(self._executor.tasks))
            async with anyio.create_task_group() as background:
                await self._start_background(background)
                async with anyio.create_task_group() as work:
                    for index in range(self.options.concurrency):
                        work.start_soon(self._slot, index)
                    await work.start(self._queue.run)
                    background.start_soon(self._abort_after_timeout)
                    self._state = "running"
                    task_status.started()
                await self._drain()
                background.cancel_scope.cancel()
        finally:
            self._state = "stopped"
            self._limited.close()
            self._threads.close()
            self._emit("pool:release")
            if self._owns_database:
                await self._database.close()
            self._emit("stop")

    async def _drain(self) -> None:
        """Write what is left (buffered jobs go back) and end the lease, waiting at most
        graceful_shutdown_abort_timeout for an unreachable database: the lease then expires
        and another pool releases what it still holds."""
        patience = max(self.options.graceful_shutdown_abort_timeout, 0.1)
        self._completer.give_back(self._queue.drain())
        with anyio.move_on_after(patience) as waited:
            await self._completer.drained()
        if waited.cancelled_caught:
            self.logger.warning("could not write every job result before stopping")
        await self._lease.end(timeout=patience)

    async def _start_background(self, group: anyio.abc.TaskGroup) -> None:
        opts, store = self.options, self._store
        await group.start(self._completer.run)
        await group.start(self._lease.run)
        executor = self._executor
        for loop in pool_loops(
            reset_stale_locks=store.reset_stale_locks if opts.sweep_stale_locks else None,
            cancellations_for=store.cancellations_for,
            reapply_pauses=store.reapply_pauses,
            reconcile_limits=store.reconcile_limits,
            tidy_limits=store.tidy_limits,
            prune_history=store.prune_history,
            retention=(opts.history_retention, opts.history_max_rows),
            live_pools=store.live_pools,
            on_live_pools=self._queue.set_live_pools,
            running_ids=executor.running_ids,
            cancel_job=executor.cancel_job,
            unserved_tasks=store.unserved_tasks if opts.unserved_warning_interval else None,
            unserved_every=opts.unserved_warning_interval,
            own_tasks=lambda: list(executor.tasks),
            emit=self._emit,
            logger=self.logger,
        ):
            await group.start(loop.run)
        if self._once:
            return
        if opts.poll_only:
            self.logger.info(
                "poll_only: new jobs are found by polling every %ss, not by LISTEN",
                opts.poll_interval,
            )
        else:
            listener = Listener(
                listen=functools.partial(self._database.listen, conninfo=opts.listen_connection),
                on_jobs=self._nudge,
                on_breaking=self._on_breaking_migration,
                on_cancel=self._executor.cancel_job,
                on_limits=self._limited.wake,
                emit=self._emit,
                wants=self.events.wants,
                logger=self.logger,
            )
            await group.start(listener.run)

    async def _slot(self, index: int) -> None:
        self._emit("worker:create", worker=index)
        queue, executor, completer, events = (
            self._queue,
            self._executor,
            self._completer,
            self.events,
        )
        while (job := await queue.take()) is not None:
            if events.wants("job:start"):
                self._emit("job:start", job=job)
            completer.report(await executor.run(job))
            queue.after_job()
        self._emit("worker:stop", worker=index)
        self._emit("worker:release", worker=index)

    async def _abort_after_timeout(self) -> None:
        """Once a graceful shutdown has lasted graceful_shutdown_abort_timeout, give running
        handlers their abort signal."""
        await self._stop_requested.wait()
        await asyncio.sleep(self.options.graceful_shutdown_abort_timeout)
        self._executor.abort_all("graceful shutdown timed out")

    async def _fetch(self, n: int) -> Sequence[Job]:
        if not self._task_ids:
            self._task_ids = await self._store.register_tasks(list(self._executor.tasks))
        flags = await self.options.forbidden_flags_now()
        return await self._limited.fetch(self._task_ids, flags, n)

    def _helpers(self, job: Job, threads: bool) -> JobHelpers:
        connections = self._database.connections
        return JobHelpers(job, self.logger, connections, self._add_store, threads=threads)

    def _emit(self, name: EventName, **fields: Any) -> None:
        self.events.emit(name, self.pool_id, **fields)

    def _nudge(self) -> None:
        self._queue.nudge()

    def _on_fatal(self, exc: BaseException) -> None:
        self._fatal = exc
        self.shutdown(forceful=False)

    def _on_lease_lost(self, lease_id: str, reason: str) -> None:
        """Stop fetching, abort the runs of the lost lease, give its buffered jobs back."""
        self._lease_lost = True
        self._queue.pause()
        self._executor.abandon_lease(lease_id)
        self._completer.give_back(self._queue.drain())
        self._emit("pool:leaseLost", lease_id=lease_id, reason=reason)

    def _on_lease_regained(self, lease_id: str) -> None:
        self._store.lease_id = lease_id
        self._lease_lost = False
        self._emit("pool:leaseRegained", lease_id=lease_id)
        self._queue.resume()

    async def _reconcile(self) -> None:
        """After a fetch whose answer was lost: give back what the lease holds unknown."""
        known = self._queue.buffered_ids() | self._executor.running_ids()
        known |= self._completer.pending_ids()
        returned = await self._store.return_unknown(self._store.lease_id, known)
        if returned:
            self.logger.warning("gave back %d jobs locked by a lost fetch", len(returned))

    def _on_released(self, job_ids: list[int]) -> None:
        self._emit("pool:recovered", job_ids=job_ids)
        self._nudge()

    def _on_breaking_migration(self, revision: Any) -> None:
        self.logger.warning(
            "breaking migration to schema revision %s detected; shutting down", revision
        )
        self.exit_code = 57
        self.shutdown(forceful=False)
