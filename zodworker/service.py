"""The one composition: worker pool + cron + watchers + housekeeping on one database.

``ZodWorker.initialize()`` and ``zodworker run`` both run a :class:`Service`: the process
opens one :class:`~zodworker.db.connect.Database` (one connection pool, shared by enqueueing,
the worker pool, cron and housekeeping, plus the worker's LISTEN and heartbeat connections),
migrates it, and hands it to the service, which runs

* the worker pool (:class:`~zodworker.worker.pool.WorkerPool`), when there are tasks to run;
* the cron scheduler (:class:`~zodworker.cron.CronScheduler`), when there are cron items, and
  the crontab watcher that reloads them (``--watch``);
* the task-directory watcher (``--watch``);
* housekeeping loops (:class:`~zodworker.worker.maintenance.Periodic`: the typed client's
  cleanup and metrics);
* the observer (:class:`~zodworker.observe.Observer`: Prometheus/OpenTelemetry metrics and
  the ``/metrics``, ``/healthz``, ``/readyz`` endpoint), when metrics are asked for. It starts
  first, so that no job's events are missed.

All of them run in one anyio task group; the service is started with a handshake
(``await group.start(service.run)``, or :meth:`Service.start` which hosts it) and stops when
asked or when the worker pool stops (a breaking migration, ``max_contiguous_errors``). Also
here: :func:`run` and :func:`run_once` (a worker pool alone) and :func:`resolve_connection`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import TaskGroup, TaskStatus

from .config import MetricsOptions, WorkerOptions
from .cron import CronItem, CronJob, CronScheduler, CrontabWatcher, cron_job
from .db.connect import Database, conninfo_from_env
from .errors import ConfigError
from .lifecycle import Host
from .observe import Observer
from .worker.maintenance import Periodic
from .worker.pool import PoolStats, WorkerPool
from .worker.signals import handle_signals
from .worker.tasks import Handler, Task
from .worker.watch import TaskDirectoryWatcher

__all__ = [
    "CrontabWatch",
    "Service",
    "TaskDirectoryWatch",
    "resolve_connection",
    "run",
    "run_once",
]

logger = logging.getLogger("zodworker")


def resolve_connection(given: str | None) -> str:
    """``given``, else ``DATABASE_URL``, else the embedded PostgreSQL's URL (started)."""
    found = conninfo_from_env(given)
    if found is not None:
        return found
    from .embedded import start_embedded

    url = start_embedded()
    logger.info("using the embedded PostgreSQL at %s", url)
    return url


@dataclass(frozen=True, slots=True)
class CrontabWatch:
    """Reload cron items from ``path`` when it changes; ``stamp`` was taken before the items
    in use were read (so an edit made since is noticed)."""

    path: Path
    stamp: tuple[int, int] | None


@dataclass(frozen=True, slots=True)
class TaskDirectoryWatch:
    """Reload the tasks of ``path`` when a file changes; ``extra`` tasks (``--app``) are
    kept beside them."""

    path: Path
    extra: Mapping[str, Handler | Task] = field(default_factory=dict)


class Service:
    """The running parts of one process (see the module docs). The database must be open
    while the service runs; its owner opens, migrates and closes it."""

    def __init__(
        self,
        database: Database | None,
        *,
        options: WorkerOptions,
        tasks: Mapping[str, Handler | Task] | None = None,
        cron: Sequence[CronJob] = (),
        crontab: CrontabWatch | None = None,
        task_directory: TaskDirectoryWatch | None = None,
        housekeeping: Sequence[Periodic] = (),
        metrics: MetricsOptions | None = None,
    ) -> None:
        if database is None and (tasks or cron or metrics):
            raise ConfigError("database", "is needed to run tasks, cron items or metrics")
        self.database = database
        self.options = options
        self.pool: WorkerPool | None = None
        """The worker pool (None when there is nothing to run)."""
        if tasks and database is not None:
            pool_options = replace(options, migrate=False, handle_signals=False)
            self.pool = WorkerPool(tasks, pool_options, database=database)
        self.observer: Observer | None = None
        """Metrics and health (None unless ``metrics`` was given)."""
        if metrics is not None and database is not None:
            self.observer = Observer(
                metrics,
                events=options.events,
                database=database,
                schema=options.schema,
                pool=self._pool_stats,
                listening=self.pool is not None and not options.poll_only,
                logger=options.logger,
            )
        self._cron = list(cron)
        self._crontab = crontab
        self._task_directory = task_directory
        self._housekeeping = list(housekeeping)
        self._stop = asyncio.Event()
        self._host = Host(self.run, self.shutdown)

    @property
    def exit_code(self) -> int:
        """The process exit code the pool asks for (57 after a breaking migration)."""
        return 0 if self.pool is None else self.pool.exit_code

    async def start(self) -> None:
        """Start every part; return once all are running (raise a start-up error)."""
        await self._host.start()

    async def stop(self) -> None:
        """Stop gracefully and wait (see :meth:`shutdown`). Safe before start and twice."""
        await self._host.stop()

    async def wait(self) -> None:
        """Wait until the service has stopped; raise ``WorkerError`` if the pool died."""
        await self._host.wait()
        if self.pool is not None:
            await self.pool.wait()

    def shutdown(self, *, forceful: bool = False) -> None:
        """Begin stopping: the pool shuts down (gracefully unless ``forceful``), then the
        other parts are cancelled. Returns at once."""
        self._stop.set()
        if self.pool is not None:
            self.pool.shutdown(forceful=forceful)

    def stopping(self) -> bool:
        """Whether a shutdown has begun."""
        return self._stop.is_set()

    def handle_signals(self) -> None:
        """First SIGINT/SIGTERM: graceful shutdown; second: forceful (until stopped)."""
        remove = handle_signals(self.shutdown, self.stopping, self.options.logger)
        self._host.done_callback(remove)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Run every part until the service is shut down (or the pool stops)."""
        async with anyio.create_task_group() as background:
            await self._start_background(background)
            if self.pool is None:
                task_status.started()
                await self._stop.wait()
            else:
                async with anyio.create_task_group() as work:
                    await work.start(self.pool.run)
                    task_status.started()
            background.cancel_scope.cancel()

    def _pool_stats(self) -> PoolStats | None:
        return None if self.pool is None else self.pool.stats()

    async def _start_background(self, group: TaskGroup) -> None:
        options = self.options
        if self.observer is not None:
            await group.start(self.observer.run)
        if self._cron and self.database is not None:
            scheduler = CronScheduler(
                self._cron,
                self.database.connections,
                schema=options.schema,
                pool_id=options.pool_id,
                events=options.events,
            )
            await group.start(scheduler.run)
            if self._crontab is not None:
                await group.start(self._crontab_watcher(scheduler, self._crontab).run)
        if self._task_directory is not None and self.pool is not None:
            await group.start(self._task_watcher(self.pool, self._task_directory).run)
        for loop in self._housekeeping:
            await group.start(loop.run)

    @staticmethod
    def _crontab_watcher(scheduler: CronScheduler, watch: CrontabWatch) -> CrontabWatcher:
        def reload(items: list[CronItem]) -> None:
            scheduler.replace_items([cron_job(item) for item in items])

        return CrontabWatcher(watch.path, reload, seen=watch.stamp)

    @staticmethod
    def _task_watcher(pool: WorkerPool, watch: TaskDirectoryWatch) -> TaskDirectoryWatcher:
        extra = dict(watch.extra)
        return TaskDirectoryWatcher(
            watch.path, lambda found: pool.replace_tasks({**found, **extra})
        )


def _options(options: WorkerOptions | None, overrides: dict[str, Any]) -> WorkerOptions:
    base = options or WorkerOptions()
    chosen = replace(base, **overrides) if overrides else base
    return replace(chosen, connection=resolve_connection(chosen.connection))


async def run(
    tasks: Mapping[str, Handler | Task], options: WorkerOptions | None = None, **overrides: Any
) -> WorkerPool:
    """Start a long-lived worker pool and return it (``await pool.wait()`` / ``stop()``).

    Keyword arguments override fields of ``options``. The connection is ``connection``, else
    ``DATABASE_URL``, else the embedded PostgreSQL. With ``handle_signals`` (default) the
    first SIGINT/SIGTERM shuts down gracefully, the second forcefully.
    """
    pool = WorkerPool(tasks, _options(options, overrides))
    await pool.start()
    if pool.options.handle_signals:
        remove = handle_signals(
            pool.shutdown, lambda: pool.stats().state == "stopping", pool.logger
        )
        pool.when_stopped(remove)
    return pool


async def run_once(
    tasks: Mapping[str, Handler | Task], options: WorkerOptions | None = None, **overrides: Any
) -> None:
    """Run every job that is due now, then return."""
    pool = WorkerPool(tasks, _options(options, overrides), once=True)
    await pool.start()
    await pool.wait()
