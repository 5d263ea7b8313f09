"""``ZodWorker``: the typed client applications use to enqueue and run jobs.

::

    client = ZodWorker(catalog=Platform(), database_url=url, concurrency=10)
    await client.initialize()                      # migrate, start running the catalog's tasks
    async with pool.connection() as conn, conn.transaction():
        await insert_run(conn, ...)
        await client.enqueue(Platform.startRun, StartRun(id=run_id), tx=conn)  # commits with it
    await client.dequeue("job_run:EXECUTE_JOB:run_1")
    await client.stop()

Enqueueing, dequeueing and waiting for results are the :class:`~zodworker.producer.Producer`
half (one path from a task and a payload to a job; handles and ``result()``). The client
holds no SQL and runs no loops: running jobs, cron and housekeeping are the
:class:`~zodworker.service.Service` it starts; awaited results are the
:class:`~zodworker.results.ResultWaiter` it starts on first use.

Lifecycle: ``new --initialize()--> running --stop()--> stopped``. ``initialize()`` twice is
fine, so is ``stop()`` before ``initialize()`` or twice; a stopped client cannot be started
again, and using one that is not running raises :class:`~zodworker.errors.LifecycleError`
saying what to call. A failing ``initialize()`` closes what it had opened.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from . import housekeeping
from .catalog import TaskCatalog
from .config import Cleanup, MetricsOptions, Reporter, WorkerOptions
from .cron import CronJob, Recurring, check_recurring
from .db.connect import Database, conninfo_from_env, conninfo_of
from .db.migrate import migrate_target
from .db.results import RESULTS_CHANNEL, ResultStore, SyncResultStore
from .db.rows import AsyncTarget
from .db.store import Store, SyncStore
from .errors import ConfigError, LifecycleError, UsageError
from .housekeeping import housekeeping_loops, report_failures
from .job import DEFAULT_SCHEMA
from .observe import Observer
from .producer import Producer
from .results import Results, ResultWaiter
from .service import Service, resolve_connection
from .tracing import Tracing
from .typed import InvalidPayloadPolicy, catalog_task, check_policy, recurring_task
from .worker.pool import WorkerPool
from .worker.tasks import Task

if TYPE_CHECKING:
    from psycopg_pool import AsyncConnectionPool

__all__ = ["ZodWorker"]


def _positive(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigError(name, "must be a positive number of seconds")
    return float(value)


class ZodWorker(Producer):
    """Enqueues catalog tasks with validated payloads, runs their handlers, and hands out
    their results."""

    def __init__(
        self,
        *,
        catalog: TaskCatalog,
        name: str = "zodworker",
        database_url: str | None = None,
        connection_pool: AsyncConnectionPool[Any] | None = None,
        schema: str = DEFAULT_SCHEMA,
        producer_only: bool = False,
        migrate: bool = True,
        invalid_payload: InvalidPayloadPolicy = "fail",
        recurring_tasks: Mapping[str, Recurring] | None = None,
        cleanup: Cleanup | None = None,
        reporter: Reporter | None = None,
        metrics_interval: float = 60.0,
        metrics: MetricsOptions | None = None,
        tracing: bool = False,
        result_poll_interval: float = 1.0,
        worker_options: WorkerOptions | None = None,
        **worker_overrides: Any,
    ) -> None:
        """``connection_pool``: an open psycopg pool to enqueue on (the client does not
        close it; the worker runs on a pool of its own); else the client opens one pool from
        ``database_url`` (``DATABASE_URL``, else the embedded server) and uses it for
        everything. ``producer_only``: never run jobs (web processes). ``invalid_payload``:
        ``"fail"`` (permanently) or ``"retry"``. ``recurring_tasks``:
        ``{identifier: recurring("*/5 * * * *", handler)}``, scheduled exactly once per
        occurrence across processes (with backfill) while this client runs jobs.
        ``cleanup``: delete permanently failed jobs periodically. ``reporter(event, props)``:
        receives ``"metrics"`` every ``metrics_interval`` seconds and ``"job:failed"``.
        ``metrics``: Prometheus/OpenTelemetry metrics, health endpoints. ``tracing``: spans
        (:mod:`zodworker.tracing`). ``result_poll_interval``: how often awaited results are
        polled for besides NOTIFY. Other keywords are :class:`WorkerOptions` fields
        (``history=True`` keeps every task's results)."""
        if not isinstance(catalog, TaskCatalog):
            raise ConfigError("catalog", "must be a TaskCatalog")
        check_policy(invalid_payload)
        self.name = name
        self.catalog = catalog
        self.logger = logging.getLogger(f"zodworker.client.{name}")
        self._database_url = database_url
        self._given_pool = connection_pool
        self._schema = schema
        self._producer_only = producer_only
        self._migrate = migrate
        self._invalid_payload = invalid_payload
        self._store = Store(schema)
        self._sync_store = SyncStore(schema)
        self._limited = [limit for t in catalog.values() for limit in t.limits]
        self._worker_options = WorkerOptions.merged(
            worker_options, schema=schema, migrate=False, **worker_overrides
        )
        self._tracing = Tracing() if tracing else None
        self._recurring = check_recurring(recurring_tasks, set(catalog))
        self._cleanup = cleanup
        self._reporter = reporter
        self._metrics_interval = _positive(metrics_interval, "metrics_interval")
        self._metrics = metrics
        self._state: Literal["new", "running", "stopped"] = "new"
        self._database: Database | None = None
        self._connections: AsyncConnectionPool[Any] | None = None
        self._service: Service | None = None
        self._waiter: ResultWaiter | None = None
        self._results = Results(
            catalog,
            waiter=self._result_waiter,
            sync_states=SyncResultStore(schema).states,
            conninfo=lambda: self.conninfo,
            poll_interval=_positive(result_poll_interval, "result_poll_interval"),
        )

    # ---------------------------------------------------------------- lifecycle

    async def initialize(self) -> None:
        """Connect, migrate (unless ``migrate=False``) and start running the catalog's tasks
        (unless ``producer_only``). Calling it again does nothing."""
        if self._state == "running":
            return
        if self._state == "stopped":
            raise LifecycleError(
                f"{self.name}: stopped clients cannot be started again; make a new one"
            )
        try:
            await self._open()
        except BaseException:
            with contextlib.suppress(Exception):  # the start-up error is the one to raise
                await self._close()
            raise
        self._state = "running"

    async def _open(self) -> None:
        tasks = self.worker_tasks()
        runs = not self._producer_only
        if self._given_pool is None or (runs and (tasks or self._recurring)):
            self._database = self._new_database()
            await self._database.open()
        given = self._given_pool
        connections = given if given is not None else self._require_database().connections
        self._connections = connections
        if self._migrate:
            await migrate_target(connections, schema=self._schema)
        if self._limited:
            await self._store.declare_limits(connections, self._limited)
        if runs:
            self._service = self._new_service(tasks, connections)
            await self._service.start()
            pool = self._service.pool
            if self._reporter is not None and pool is not None:
                pool.events.on("job:failed", report_failures(self._reporter))

    def _new_database(self) -> Database:
        options = self._worker_options
        url = options.connection or self._database_url
        if url is None and self._given_pool is not None:
            url = conninfo_of(self._given_pool)
        return Database(
            resolve_connection(url),
            schema=self._schema,
            max_size=options.max_pool_size,
            prepared_statements=options.use_prepared_statements,
            name=options.pool_id,
        )

    def _new_service(self, tasks: dict[str, Task], connections: AsyncTarget) -> Service:
        return Service(
            self._database,
            options=self._worker_options,
            tasks=tasks,
            cron=self.recurring_schedules(),
            housekeeping=housekeeping_loops(
                connections,
                self._schema,
                cleanup_policy=self._cleanup,
                reporter=self._reporter,
                metrics_interval=self._metrics_interval,
                stats=lambda: None if self.worker_pool is None else self.worker_pool.stats(),
                log=self.logger,
            ),
            metrics=self._metrics,
        )

    def worker_tasks(self) -> dict[str, Task]:
        """The worker tasks this client runs: its catalog's handlers (validating payloads
        with its ``invalid_payload`` policy) and its recurring tasks (``zodworker run --app
        module:client`` runs these)."""
        tasks = {
            name: catalog_task(spec, self._invalid_payload, self._tracing)
            for name, spec in self.catalog.items()
            if spec.handler is not None
        }
        tasks.update({name: recurring_task(entry) for name, entry in self._recurring.items()})
        return tasks

    def recurring_schedules(self) -> list[CronJob]:
        """The cron schedules of this client's recurring tasks."""
        return [entry.cron_job(name) for name, entry in self._recurring.items()]

    async def run_until_stopped(self) -> None:
        """Initialize (if needed) and run the catalog's tasks until SIGINT or SIGTERM: the
        first one stops gracefully (running jobs finish), a second one forcefully; then
        stop. For a process whose job is to be a worker (``asyncio.run(client.run_until_
        stopped())``)."""
        if self._producer_only:
            raise UsageError(f"{self.name}: a producer-only client runs no jobs")
        await self.initialize()
        service = self._service
        assert service is not None
        service.handle_signals()
        try:
            await service.wait()
        finally:
            await self.stop()

    async def stop(self, timeout: float | None = 60.0) -> None:  # noqa: ASYNC109 (graceful period)
        """Stop running jobs (gracefully; after ``timeout`` seconds forcefully) and close the
        client's own pool. Safe to call before :meth:`initialize` and more than once."""
        if self._state != "running":
            self._state = "stopped"
            return
        self._state = "stopped"
        await self._close(timeout)

    async def _close(self, timeout: float | None = 60.0) -> None:  # noqa: ASYNC109
        """Stop the service and close the client's own pool (also after a failed start, and
        even when stopping the service raises)."""
        service, self._service = self._service, None
        database, self._database = self._database, None
        waiter, self._waiter = self._waiter, None
        self._connections = None
        try:
            if waiter is not None:
                await waiter.close()
            if service is not None:
                try:
                    await asyncio.wait_for(asyncio.shield(service.stop()), timeout)
                except TimeoutError:
                    service.shutdown(forceful=True)
                    await service.stop()
        finally:
            if database is not None:
                await database.close()

    async def __aenter__(self) -> ZodWorker:
        await self.initialize()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def worker_pool(self) -> WorkerPool | None:
        """The worker pool running the catalog's tasks (None when producer-only)."""
        return None if self._service is None else self._service.pool

    @property
    def schema(self) -> str:
        """The graphile-worker schema this client works on."""
        return self._schema

    @property
    def conninfo(self) -> str | None:
        """The database URL the client uses (None: not known until ``initialize()``
        starts the embedded server)."""
        if self._database is not None:
            return self._database.conninfo
        given = None if self._given_pool is None else conninfo_of(self._given_pool)
        return conninfo_from_env(self._database_url or given)

    @property
    def connections(self) -> AsyncConnectionPool[Any]:
        """The pool the running client enqueues on (raises LifecycleError before
        ``initialize()`` and after ``stop()``)."""
        return self._require_connections()

    @property
    def observer(self) -> Observer | None:
        """Metrics and health of the running worker (``metrics=``): ``registry``, ``port``."""
        return None if self._service is None else self._service.observer

    async def cleanup_now(self, cleanup: Cleanup) -> int:
        """Delete up to ``cleanup.max_count`` permanently failed jobs older than
        ``cleanup.ttl`` seconds (through ``complete_jobs``); return how many."""
        return await housekeeping.cleanup(self._require_connections(), self._schema, cleanup)

    async def metrics(self) -> dict[str, Any]:
        """Queue metrics: jobs ready to run per task (from the available-jobs index) and
        this process's running and locally held jobs."""
        pool = self.worker_pool
        stats = None if pool is None else pool.stats()
        return await housekeeping.metrics(self._require_connections(), self._schema, stats)

    def _require_connections(self) -> AsyncConnectionPool[Any]:
        if self._connections is None or self._state != "running":
            raise LifecycleError(
                f"{self.name}: call `await client.initialize()` first, or pass tx=<connection>"
            )
        return self._connections

    def _result_waiter(self) -> ResultWaiter:
        """The one waiter of this client (one LISTEN connection), made on first use."""
        if self._waiter is None:
            connections = self._require_connections()
            database = self._database or Database(conninfo_of(connections), schema=self._schema)
            states = ResultStore(self._schema).states
            self._waiter = ResultWaiter(
                listen=lambda: database.listen([RESULTS_CHANNEL]),
                states=lambda ids: states(connections, ids),
                poll_interval=self._results.poll_interval,
                logger=self.logger,
            )
        return self._waiter

    def _require_database(self) -> Database:
        if self._database is None:
            raise LifecycleError(f"{self.name}: not connected; call `await client.initialize()`")
        return self._database
