"""``ZodWorker``: the typed client applications use to enqueue and run jobs.

::

    client = ZodWorker(catalog=Platform(), database_url=url, concurrency=10)
    await client.initialize()                      # migrate, start running the catalog's tasks
    async with pool.connection() as conn, conn.transaction():
        await insert_run(conn, ...)
        await client.enqueue(Platform.startRun, StartRun(id=run_id), tx=conn)  # commits with it
    await client.dequeue("job_run:EXECUTE_JOB:run_1")
    await client.stop()

Every enqueue goes through one path: look the task up (an unknown name is a
:class:`~zodworker.errors.CatalogError` listing close names), validate the payload against
the task's type (:class:`~zodworker.errors.PayloadValidationError` naming the field; nothing
is written), overlay the call's options on the task's defaults (an option not given keeps
the default; ``None`` clears it; ``0`` stays ``0``), then add the job on ``tx`` (the caller's
open transaction: it exists only if the caller commits) or on the client's own pool.

When a job runs, its stored payload is validated again before the handler sees it; a payload
that does not fit (added by an older deploy, by Node, by raw SQL) fails the job permanently
with the validation message as last_error, instead of retrying it max_attempts times.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any, Final, Literal, TypedDict, TypeVar, Unpack, overload

import psycopg
from psycopg_pool import AsyncConnectionPool

from . import sqlfiles
from .catalog import TaskCatalog, TaskDef
from .cron import CronJob, CronScheduler
from .crontab import CronSchedule, parse_time_phrase
from .errors import ConfigError, PayloadValidationError, PermanentFailure, ZodworkerError
from .events import Event
from .helpers import JobHelpers
from .job import DEFAULT_SCHEMA, Job, JobKeyMode, JobSpec
from .migrate import migrate
from .options import WorkerOptions
from .runner import Task, WorkerPool, resolve_connection
from .store import Store
from .sync_store import SyncStore
from .tracing import Tracing, strip_trace

__all__ = [
    "NOT_GIVEN",
    "Cleanup",
    "CronTick",
    "EnqueueOptions",
    "NotGiven",
    "Recurring",
    "Reporter",
    "ZodWorker",
    "recurring",
]

P = TypeVar("P")


class NotGiven(Enum):
    """The type of :data:`NOT_GIVEN`: "use the task's default", as opposed to ``None``."""

    NOT_GIVEN = "NOT_GIVEN"


NOT_GIVEN: Final = NotGiven.NOT_GIVEN

InvalidPayloadPolicy = Literal["fail", "retry"]
_OPTION_ORDER: Final = (
    "queue_name",
    "run_at",
    "job_key",
    "job_key_mode",
    "priority",
    "max_attempts",
    "flags",
)


class EnqueueOptions(TypedDict, total=False):
    """Per-call job options. One not given keeps the task's default; ``None`` clears it."""

    queue_name: str | NotGiven | None
    run_at: datetime | NotGiven | None
    job_key: str | NotGiven | None
    job_key_mode: JobKeyMode | NotGiven | None
    priority: int | NotGiven | None
    max_attempts: int | NotGiven | None
    flags: Sequence[str] | NotGiven | None


class ZodWorker:
    """Enqueues catalog tasks with validated payloads and runs their handlers."""

    def __init__(
        self,
        *,
        catalog: TaskCatalog,
        name: str = "zodworker",
        database_url: str | None = None,
        pool: AsyncConnectionPool[Any] | None = None,
        schema: str = DEFAULT_SCHEMA,
        producer_only: bool = False,
        migrate: bool = True,
        invalid_payload: InvalidPayloadPolicy = "fail",
        recurring_tasks: Mapping[str, Recurring] | None = None,
        cleanup: Cleanup | None = None,
        reporter: Reporter | None = None,
        metrics_interval: float = 60.0,
        tracing: bool = False,
        worker_options: WorkerOptions | None = None,
        **worker_overrides: Any,
    ) -> None:
        """``pool``: an open psycopg pool the client should use for enqueueing (the client
        does not close it); else one is opened from ``database_url`` (``DATABASE_URL``, else
        the embedded server). ``producer_only``: never run jobs (web processes).
        ``invalid_payload``: ``"fail"`` (permanently) or ``"retry"``. ``recurring_tasks``:
        ``{identifier: recurring("*/5 * * * *", handler)}``, scheduled exactly once per
        occurrence across processes (with backfill) while this client runs jobs. ``cleanup``: delete
        permanently failed jobs periodically. ``reporter(event, props)``: receives
        ``"metrics"`` every ``metrics_interval`` seconds and ``"job:failed"``. ``tracing``:
        OpenTelemetry spans (see :mod:`zodworker.tracing`). Other keyword
        arguments are :class:`WorkerOptions` fields (concurrency, poll_interval, ...)."""
        if not isinstance(catalog, TaskCatalog):
            raise ConfigError("catalog", "must be a TaskCatalog")
        if invalid_payload not in ("fail", "retry"):
            raise ConfigError("invalid_payload", "must be 'fail' or 'retry'")
        self.name = name
        self.catalog = catalog
        self._database_url = database_url
        self._given_pool = pool
        self._pool: AsyncConnectionPool[Any] | None = pool
        self._schema = schema
        self._producer_only = producer_only
        self._migrate = migrate
        self._invalid_payload = invalid_payload
        self._store = Store(schema)
        self._sync_store = SyncStore(schema)
        base = worker_options or WorkerOptions(schema=schema)
        try:
            self._worker_options = WorkerOptions(
                **{**_fields(base), "schema": schema, "migrate": False, **worker_overrides}
            )
        except TypeError as exc:
            raise ConfigError("worker options", str(exc)) from None
        self._tracing = Tracing() if tracing else None
        self._recurring = dict(recurring_tasks or {})
        for name, entry in self._recurring.items():
            if not isinstance(entry, Recurring):
                raise ConfigError(f"recurring_tasks[{name!r}]", "must be recurring(...)")
            if name in catalog:
                raise ConfigError(
                    f"recurring_tasks[{name!r}]", "is also a catalog task; use another identifier"
                )
        self._cleanup = cleanup
        self._reporter = reporter
        if not (isinstance(metrics_interval, (int, float)) and metrics_interval > 0):
            raise ConfigError("metrics_interval", "must be a positive number of seconds")
        self._metrics_interval = float(metrics_interval)
        self._background: list[asyncio.Task[None]] = []
        self._runner: WorkerPool | None = None
        self._state: Literal["new", "running", "stopped"] = "new"
        self.logger = logging.getLogger(f"zodworker.client.{name}")

    # ---------------------------------------------------------------- lifecycle

    async def initialize(self) -> None:
        """Connect, migrate (unless ``migrate=False``) and start running the catalog's tasks
        (unless ``producer_only``). Calling it again does nothing."""
        if self._state == "running":
            return
        if self._state == "stopped":
            raise ZodworkerError(
                f"{self.name}: stopped clients cannot be started again; make a new one"
            )
        url = self._database_url
        if self._given_pool is None:
            url = resolve_connection(url)
            self._pool = AsyncConnectionPool(
                url, min_size=1, max_size=self._worker_options.max_pool_size, open=False
            )
            await self._pool.open(wait=True, timeout=30)
        assert self._pool is not None
        if self._migrate:
            async with self._pool.connection() as conn:
                autocommit = conn.autocommit  # a caller's pool may use either; put it back
                await conn.set_autocommit(True)
                try:
                    await migrate(conn, schema=self._schema)
                finally:
                    await conn.set_autocommit(autocommit)
        if not self._producer_only:
            tasks = {
                name: self._runnable(spec) for name, spec in self.catalog.items() if spec.handler
            }
            tasks.update({name: entry.runnable() for name, entry in self._recurring.items()})
            if tasks:
                connection = self._worker_options.connection or url or _pool_conninfo(self._pool)
                options = WorkerOptions(
                    **{**_fields(self._worker_options), "connection": connection}
                )
                self._runner = WorkerPool(tasks, options)
                await self._runner.start()
            if self._recurring:
                scheduler = CronScheduler(
                    [entry.cron_job(name) for name, entry in self._recurring.items()],
                    self._pool,
                    schema=self._schema,
                    events=self._runner.events if self._runner is not None else None,
                )
                self._background.append(asyncio.create_task(scheduler.run()))
            if self._cleanup is not None:
                self._background.append(asyncio.create_task(self._cleanup_loop(self._cleanup)))
            if self._reporter is not None:
                self._background.append(asyncio.create_task(self._metrics_loop(self._reporter)))
                if self._runner is not None:
                    reporter = self._reporter
                    self._runner.events.on(
                        "job:failed", lambda e: _report(reporter, "job:failed", _job_props(e))
                    )
        self._state = "running"

    async def stop(self, timeout: float | None = 60.0) -> None:  # noqa: ASYNC109 (graceful period)
        """Stop running jobs (gracefully; after ``timeout`` seconds forcefully) and close the
        client's own pool. Safe to call before :meth:`initialize` and more than once."""
        if self._state != "running":
            self._state = "stopped"
            return
        self._state = "stopped"
        for background in self._background:
            background.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        if self._runner is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._runner.stop()), timeout)
            except TimeoutError:
                await self._runner.stop(forceful=True)
        if self._given_pool is None and self._pool is not None:
            await self._pool.close()

    async def __aenter__(self) -> ZodWorker:
        await self.initialize()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def runner(self) -> WorkerPool | None:
        """The worker pool running the catalog's tasks (None when producer-only)."""
        return self._runner

    # ---------------------------------------------------------------- enqueueing

    @overload
    async def enqueue(
        self,
        task: TaskDef[P],
        payload: P,
        *,
        tx: psycopg.AsyncConnection[Any] | None = None,
        **options: Unpack[EnqueueOptions],
    ) -> Job: ...
    @overload
    async def enqueue(
        self,
        task: str,
        payload: Any,
        *,
        tx: psycopg.AsyncConnection[Any] | None = None,
        **options: Unpack[EnqueueOptions],
    ) -> Job: ...
    async def enqueue(
        self,
        task: TaskDef[Any] | str,
        payload: Any,
        *,
        tx: psycopg.AsyncConnection[Any] | None = None,
        **options: Unpack[EnqueueOptions],
    ) -> Job:
        """Validate ``payload`` for ``task`` and add the job; return it.

        ``task`` is a task of the catalog (typed: mypy checks the payload's type) or its
        identifier. With ``tx`` the job is added in that connection's transaction."""
        spec, mode = self._spec(task, payload, options)
        target = tx if tx is not None else self._require_pool()
        if self._tracing is None:
            return await self._store.add_spec(target, spec, mode)
        with self._tracing.enqueue(spec) as span:
            job = await self._store.add_spec(target, spec, mode)
            self._tracing.record_job(span, job)
            return job

    async def enqueue_many(
        self,
        items: Sequence[tuple[TaskDef[Any] | str, Any]],
        *,
        tx: psycopg.AsyncConnection[Any] | None = None,
    ) -> list[Job]:
        """Validate and add many jobs in one statement (key mode ``replace``, or
        ``preserve_run_at`` when every keyed task asks for it)."""
        built = [self._spec(task, payload, {}) for task, payload in items]
        modes = {mode for spec, mode in built if spec.job_key is not None}
        if "unsafe_dedupe" in modes or len(modes) > 1:
            raise ConfigError(
                "job_key_mode",
                "enqueue_many adds with one key mode (replace or preserve_run_at); "
                "enqueue unsafe_dedupe or mixed-mode tasks one by one",
            )
        target = tx if tx is not None else self._require_pool()
        return await self._store.add_jobs(
            target,
            [spec for spec, _ in built],
            job_key_preserve_run_at=modes == {"preserve_run_at"},
        )

    async def dequeue(
        self, job_key: str, *, tx: psycopg.AsyncConnection[Any] | None = None
    ) -> Job | None:
        """Remove the job with ``job_key`` (see :meth:`Store.remove_job`); None if none."""
        target = tx if tx is not None else self._require_pool()
        return await self._store.remove_job(target, job_key)

    # ---------------------------------------------------------------- sync producers

    @overload
    def enqueue_sync(
        self,
        task: TaskDef[P],
        payload: P,
        *,
        tx: psycopg.Connection[Any],
        **options: Unpack[EnqueueOptions],
    ) -> Job: ...
    @overload
    def enqueue_sync(
        self,
        task: str,
        payload: Any,
        *,
        tx: psycopg.Connection[Any],
        **options: Unpack[EnqueueOptions],
    ) -> Job: ...
    def enqueue_sync(
        self,
        task: TaskDef[Any] | str,
        payload: Any,
        *,
        tx: psycopg.Connection[Any],
        **options: Unpack[EnqueueOptions],
    ) -> Job:
        """:meth:`enqueue` for synchronous code, on the caller's psycopg ``Connection``
        (committed with it). Takes the same options; needs no :meth:`initialize`."""
        spec, mode = self._spec(task, payload, options)
        return self._sync_store.add_spec(tx, spec, mode)

    def dequeue_sync(self, job_key: str, *, tx: psycopg.Connection[Any]) -> Job | None:
        """:meth:`dequeue` for synchronous code, on the caller's ``Connection``."""
        return self._sync_store.remove_job(tx, job_key)

    def _require_pool(self) -> AsyncConnectionPool[Any]:
        if self._pool is None or self._state != "running":
            raise ZodworkerError(
                f"{self.name}: call `await client.initialize()` first, or pass tx=<connection>"
            )
        return self._pool

    def _spec(
        self, task: TaskDef[Any] | str, payload: Any, options: EnqueueOptions
    ) -> tuple[JobSpec, JobKeyMode | None]:
        spec = self.catalog.resolve(task)
        valid = spec.codec.validate(payload, task=spec.identifier)
        # Only queue_name and job_key may be callables of the payload; the rest are values.
        queue, key = spec.queue_name, spec.job_key
        job = JobSpec(
            identifier=spec.identifier,
            payload=spec.codec.to_json(valid),
            queue_name=queue(valid) if callable(queue) else queue,
            max_attempts=spec.max_attempts,
            job_key=key(valid) if callable(key) else key,
            priority=spec.priority,
            flags=spec.flags,
        )
        mode = spec.job_key_mode
        if not options:  # the common case, e.g. batches
            return job, mode
        for name, value in options.items():
            if value is NOT_GIVEN:
                continue
            if name == "job_key_mode":
                mode = value  # type: ignore[assignment]
            elif name in _OPTION_ORDER:
                setattr(job, name, value)
            else:
                raise TypeError(f"enqueue() got an unexpected option {name!r}")
        return job, mode

    # ---------------------------------------------------------------- housekeeping

    async def cleanup_now(self, cleanup: Cleanup) -> int:
        """Delete up to ``cleanup.max_count`` permanently failed jobs older than
        ``cleanup.ttl`` seconds (through ``complete_jobs``); return how many."""
        async with self._require_pool().connection() as conn:
            cur = await conn.execute(
                sqlfiles.query("cleanup_dead_jobs", self._schema),
                {"ttl": f"{cleanup.ttl} seconds", "max_count": cleanup.max_count},
            )
            row = await cur.fetchone()
            await conn.commit()
        return int(row[0]) if row else 0

    async def metrics(self) -> dict[str, Any]:
        """Queue metrics: jobs ready to run per task (from the available-jobs index) and
        this process's running and locally held jobs."""
        async with self._require_pool().connection() as conn:
            cur = await conn.execute(sqlfiles.query("runnable_by_task", self._schema))
            by_task = {identifier: int(n) for identifier, n in await cur.fetchall()}
            await conn.commit()
        runner = self._runner
        return {
            "runnable": sum(by_task.values()),
            "runnable_by_task": by_task,
            "running": 0 if runner is None else len(runner._running),
            "held": 0 if runner is None else len(runner._buffer),
        }

    async def _cleanup_loop(self, cleanup: Cleanup) -> None:
        while True:
            try:
                removed = await self.cleanup_now(cleanup)
                if removed:
                    self.logger.info("cleanup removed %d permanently failed jobs", removed)
            except Exception as exc:  # never let housekeeping take the client down
                self.logger.warning("cleanup failed: %s", exc)
            await asyncio.sleep(cleanup.interval)

    async def _metrics_loop(self, reporter: Reporter) -> None:
        while True:
            try:
                _report(reporter, "metrics", await self.metrics())
            except Exception as exc:
                self.logger.warning("metrics failed: %s", exc)
            await asyncio.sleep(self._metrics_interval)

    # ---------------------------------------------------------------- running

    def _runnable(self, spec: TaskDef[Any]) -> Task:
        handler = spec.handler
        assert handler is not None
        codec, name, policy = spec.codec, spec.identifier, self._invalid_payload

        def validate(payload: Any) -> Any:
            try:
                return codec.validate(strip_trace(payload), task=name)
            except PayloadValidationError as exc:
                if policy == "fail":
                    raise PermanentFailure(f"invalid payload: {exc}") from exc
                raise

        tracing = self._tracing
        if inspect.iscoroutinefunction(handler):

            async def run_async(payload: Any, helpers: JobHelpers) -> Any:
                if tracing is None:
                    return await handler(validate(payload), helpers)
                with tracing.run(helpers.job, payload):
                    return await handler(validate(payload), helpers)

            return Task(run_async, timeout=spec.timeout)

        def run_sync(payload: Any, helpers: JobHelpers) -> Any:
            if tracing is None:
                return handler(validate(payload), helpers)
            with tracing.run(helpers.job, payload):
                return handler(validate(payload), helpers)

        return Task(run_sync, timeout=spec.timeout)


@dataclass(frozen=True, slots=True)
class CronTick:
    """What a recurring task's handler gets: the scheduled instant and whether the job was
    added late, by backfill."""

    ts: datetime
    backfilled: bool


@dataclass(frozen=True, slots=True)
class Recurring:
    """A recurring task (see :func:`recurring`)."""

    schedule: CronSchedule
    handler: Callable[[CronTick, JobHelpers], Any]
    fill: float = 0.0
    queue_name: str | None = None
    max_attempts: int | None = None
    priority: int | None = None

    def cron_job(self, identifier: str) -> CronJob:
        """The scheduler's view of this task under ``identifier``."""
        return CronJob(
            identifier=identifier,
            task=identifier,
            matches=self.schedule.matches,
            fill=self.fill,
            queue_name=self.queue_name,
            max_attempts=self.max_attempts,
            priority=self.priority,
        )

    def runnable(self) -> Task:
        """The worker-side task: decodes ``_cron`` from the payload for the handler."""
        handler = self.handler

        def tick(payload: Any) -> CronTick:
            try:
                cron = payload["_cron"]
                return CronTick(datetime.fromisoformat(cron["ts"]), bool(cron["backfilled"]))
            except (KeyError, TypeError, ValueError) as exc:
                raise PermanentFailure(f"not a cron job payload: {payload!r}") from exc

        if inspect.iscoroutinefunction(handler):

            async def run_async(payload: Any, helpers: JobHelpers) -> Any:
                return await handler(tick(payload), helpers)

            return Task(run_async)

        def run_sync(payload: Any, helpers: JobHelpers) -> Any:
            return handler(tick(payload), helpers)

        return Task(run_sync)


def recurring(
    match: str,
    handler: Callable[[CronTick, JobHelpers], Any],
    *,
    tz: str | None = None,
    fill: str | float = 0,
    queue_name: str | None = None,
    max_attempts: int | None = None,
    priority: int | None = None,
) -> Recurring:
    """A task run on a cron schedule (``"*/5 * * * *"``, ``"@daily"``...), in UTC or the IANA
    zone ``tz``. ``fill`` (seconds, or a phrase like ``"2h"``) backfills occurrences missed
    while no scheduler ran."""
    seconds = parse_time_phrase(fill) if isinstance(fill, str) else float(fill)
    return Recurring(CronSchedule(match, tz), handler, seconds, queue_name, max_attempts, priority)


@dataclass(frozen=True, slots=True)
class Cleanup:
    """Periodic removal of permanently failed jobs: every ``interval`` seconds, at most
    ``max_count`` of those last touched more than ``ttl`` seconds ago."""

    ttl: float = 7 * 24 * 3600.0
    max_count: int = 1000
    interval: float = 3600.0

    def __post_init__(self) -> None:
        for name in ("ttl", "interval"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and value > 0):
                raise ConfigError(f"cleanup.{name}", "must be a positive number of seconds")
        if isinstance(self.max_count, bool) or not (
            isinstance(self.max_count, int) and self.max_count > 0
        ):
            raise ConfigError("cleanup.max_count", "must be a positive integer")


Reporter = Callable[[str, dict[str, Any]], object]
"""``reporter(event, props)``: called with ``"metrics"`` and ``"job:failed"``."""


def _report(reporter: Reporter, event: str, props: dict[str, Any]) -> None:
    try:
        reporter(event, props)
    except Exception:
        logging.getLogger("zodworker.client").exception("reporter raised on %s; ignored", event)


def _job_props(event: Event) -> dict[str, Any]:
    job = event.job
    return {
        "job_id": None if job is None else job.id,
        "task": None if job is None else job.task_identifier,
        "attempts": None if job is None else job.attempts,
        "error": None if event.error is None else str(event.error),
    }


def _fields(options: WorkerOptions) -> dict[str, Any]:
    return {name: getattr(options, name) for name in WorkerOptions.__dataclass_fields__}


def _pool_conninfo(pool: AsyncConnectionPool[Any]) -> str:
    if isinstance(pool.conninfo, str) and pool.conninfo:
        return pool.conninfo
    raise ConfigError(
        "database_url", "the given pool has no plain conninfo; pass database_url for the worker"
    )
