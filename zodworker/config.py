"""Configuration, validated once: worker pool options and the typed client's housekeeping.

:class:`WorkerOptions` keeps graphile-worker's names and defaults. Times are in seconds
(graphile-worker takes milliseconds on its command line; our command line converts). Every
field has a documented default; bad values are rejected at construction with a
:class:`~zodworker.errors.ConfigError` naming the field. :class:`Cleanup` and
:data:`Reporter` configure the typed client's housekeeping.
"""

from __future__ import annotations

import inspect
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from .errors import ConfigError
from .events import Events
from .job import DEFAULT_SCHEMA

__all__ = [
    "FETCH_AHEAD",
    "Cleanup",
    "FetchAhead",
    "ForbiddenFlags",
    "MetricsOptions",
    "Reporter",
    "WorkerOptions",
]

ForbiddenFlags = (
    Sequence[str] | Callable[[], Sequence[str] | Awaitable[Sequence[str] | None] | None] | None
)
"""Jobs carrying any of these flags are not fetched. A callable (sync or async) is
evaluated before each fetch, so the set can change at run time (e.g. rate limits)."""

FetchAhead = Literal["auto", "always", "never"]
"""When a pool with a local queue fetches its next batch before the buffer is empty."""
FETCH_AHEAD: Final[tuple[FetchAhead, ...]] = ("auto", "always", "never")

_MAX_SECONDS: Final = 7 * 24 * 3600.0


def _new_pool_id() -> str:
    return f"zodworker-{socket.gethostname()[:40]}-{os.getpid()}-{uuid.uuid4().hex[:10]}"


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerOptions:
    """How a worker pool runs. All fields are optional."""

    connection: str | None = None
    """PostgreSQL URL. Default: ``DATABASE_URL``; ``run()``, ``run_once()``, ``ZodWorker``
    and the command line then fall back to the embedded server."""
    schema: str = DEFAULT_SCHEMA
    concurrency: int = 1
    """Jobs run at the same time in this pool."""
    poll_interval: float = 2.0
    """Seconds between fetches when idle; LISTEN/NOTIFY wakes the pool sooner."""
    max_pool_size: int = 10
    """Connections of the process's shared pool (the worker, cron, enqueueing and helpers
    use it), plus the worker's dedicated LISTEN and heartbeat connections."""
    forbidden_flags: ForbiddenFlags = None
    use_prepared_statements: bool = True
    """Server-side prepared statements (faster). Turn off behind PgBouncer in transaction
    pooling mode, which does not keep them between transactions."""
    listen_connection: str | None = None
    """URL of the connection that LISTENs for new jobs, when it must differ from
    ``connection`` (PgBouncer in transaction mode: give a direct or session-pooled URL here).
    At start the pool checks that notifications arrive on it and stops with a clear error if
    they do not."""
    poll_only: bool = False
    """Do not LISTEN: new jobs are found by polling every ``poll_interval`` (behind poolers
    where LISTEN cannot work and no direct URL is available)."""
    local_queue_size: int = -1
    """Jobs fetched per query and held locally; -1 fetches only for idle slots."""
    local_queue_fetch_ahead: FetchAhead = "auto"
    """With a local queue, fetch the next batch while this one runs, when jobs are started
    faster than a fetch takes (the buffer then holds up to twice the batch):
    ``"auto"`` while this is the only live zodworker pool on the schema, ``"always"``, or
    ``"never"`` (fetch only into an empty buffer, as graphile-worker does)."""
    local_queue_max_size: int | None = None
    """A pool whose slots start a whole batch in about two fetches' time doubles its next
    batch, up to this many jobs, and goes back to ``local_queue_size`` when a fetch finds
    fewer than it asked (None: 4 x ``local_queue_size``; equal to it: batches never grow)."""
    local_queue_ttl: float = 300.0
    """Locally held jobs not started within this many seconds are returned."""
    local_queue_refetch_delay: float = 0.0
    """After a fetch that found fewer jobs than asked, wait at least this long before
    fetching again unless a notification arrives (dampens load from many idle pools)."""
    complete_job_batch_delay: float = 0.0
    """Seconds to gather completions into one query; 0 (or -1) sends them as soon as the
    previous batch is written, which still batches under load."""
    fail_job_batch_delay: float = 0.0
    graceful_shutdown_abort_timeout: float = 5.0
    """After a graceful shutdown starts, running handlers get their abort signal after this."""
    handle_signals: bool = True
    """First SIGINT/SIGTERM: graceful shutdown; second: forceful. Off for library use."""
    max_contiguous_errors: int = 10
    """Consecutive fetch failures after which the pool stops with a fatal error."""
    heartbeat_interval: float = 5.0
    """Seconds between this pool's liveness updates."""
    recovery_timeout: float = 30.0
    """A zodworker pool silent for this long is presumed dead; its jobs run again."""
    sweep_stale_locks: bool = True
    """Also run graphile-worker's 4-hour stale-lock sweep every 8-10 minutes."""
    unserved_warning_interval: float = 60.0
    """Every this many seconds, warn (once per task) about jobs ready for longer than that
    for a task no live zodworker pool runs (a typo in a task name, a worker not deployed);
    0 turns it off."""
    log_jobs: bool = True
    """Log an INFO line per successful job (failures are always logged, with traceback)."""
    history: bool = False
    """Keep the results of every task this pool runs (a history row per finished job);
    otherwise only of tasks that ask (``task(..., output=...)``, ``history=True``)."""
    history_retention: float | None = 7 * 86_400.0
    """Prune history rows older than this many seconds (None: keep them by age)."""
    history_max_rows: int | None = None
    """Prune all but the newest this many history rows (None: no count limit)."""
    migrate: bool = True
    """Install/upgrade the schema at start."""
    pool_id: str = field(default_factory=_new_pool_id)
    """This pool's id, written to locked_by of the jobs it runs."""
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger("zodworker"))
    events: Events = field(default_factory=Events)

    def __post_init__(self) -> None:
        _int(self, "concurrency", 1, 10_000)
        _int(self, "max_pool_size", 1, 1_000)
        _int(self, "max_contiguous_errors", 1, 1_000_000)
        if self.local_queue_size != -1:
            _int(self, "local_queue_size", 1, 100_000)
        if self.local_queue_max_size is not None:
            if self.local_queue_size == -1:
                raise ConfigError(
                    "local_queue_max_size", "needs a local queue; set local_queue_size too"
                )
            _int(self, "local_queue_max_size", self.local_queue_size, 400_000)
        _seconds(self, "poll_interval", low=0.001)
        _seconds(self, "local_queue_ttl", low=0.001)
        _seconds(self, "local_queue_refetch_delay", low=0.0)
        if self.local_queue_fetch_ahead not in FETCH_AHEAD:
            raise ConfigError(
                "local_queue_fetch_ahead",
                f"is {self.local_queue_fetch_ahead!r}; use one of {', '.join(FETCH_AHEAD)}",
            )
        _seconds(self, "graceful_shutdown_abort_timeout", low=0.0)
        _seconds(self, "heartbeat_interval", low=0.01)
        kept = self.history_retention
        if kept is not None and (isinstance(kept, bool) or not isinstance(kept, (int, float))):
            raise ConfigError("history_retention", f"is {kept!r}; expected seconds or None")
        if kept is not None and not kept >= 1:
            raise ConfigError("history_retention", f"is {kept!r}; expected at least 1 second")
        if self.history_max_rows is not None:
            _int(self, "history_max_rows", 0, 10**12)
        _seconds(self, "recovery_timeout", low=0.03)
        if self.unserved_warning_interval != 0:
            _seconds(self, "unserved_warning_interval", low=0.01)
        for name in ("complete_job_batch_delay", "fail_job_batch_delay"):
            value = getattr(self, name)
            if value != -1:
                _seconds(self, name, low=0.0)
        if self.recovery_timeout < 3 * self.heartbeat_interval:
            raise ConfigError(
                "recovery_timeout",
                f"is {self.recovery_timeout}s but must be at least 3 x heartbeat_interval "
                f"({3 * self.heartbeat_interval}s), or live pools would be taken for dead",
            )
        if not isinstance(self.schema, str) or not self.schema:
            raise ConfigError("schema", "must be a non-empty string")
        if not isinstance(self.pool_id, str) or not self.pool_id:
            raise ConfigError("pool_id", "must be a non-empty string")
        flags = self.forbidden_flags
        if (
            flags is not None
            and not callable(flags)
            and (isinstance(flags, str) or not all(isinstance(f, str) for f in flags))
        ):
            raise ConfigError(
                "forbidden_flags", "must be a list of strings or a callable returning one"
            )

    @property
    def batch_cap(self) -> int:
        """The most jobs one fetch asks for (``local_queue_max_size`` or its default)."""
        if self.local_queue_max_size is not None:
            return self.local_queue_max_size
        return 4 * self.local_queue_size if self.local_queue_size > 0 else self.local_queue_size

    @classmethod
    def merged(cls, base: WorkerOptions | None, **overrides: Any) -> WorkerOptions:
        """``base`` (or the defaults) with ``overrides`` applied; an unknown option name is
        a :class:`~zodworker.errors.ConfigError`."""
        fields = {} if base is None else {n: getattr(base, n) for n in cls.__dataclass_fields__}
        try:
            return cls(**{**fields, **overrides})
        except TypeError as exc:
            raise ConfigError("worker options", str(exc)) from None

    async def forbidden_flags_now(self) -> list[str]:
        """The forbidden flags for the next fetch (a callable is asked each time)."""
        flags = self.forbidden_flags
        if flags is None:
            return []
        if callable(flags):
            value = flags()
            if inspect.isawaitable(value):
                value = await value
            return list(value or ())
        return list(flags)


def _int(options: WorkerOptions, name: str, low: int, high: int) -> None:
    value = getattr(options, name)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(name, f"is {value!r}; expected an integer from {low} to {high}")


def _seconds(options: WorkerOptions, name: str, *, low: float) -> None:
    value = getattr(options, name)
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not low <= value <= _MAX_SECONDS
    ):
        raise ConfigError(
            name, f"is {value!r}; expected seconds (a number) from {low} to {_MAX_SECONDS:.0f}"
        )


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


@dataclass(frozen=True, slots=True, kw_only=True)
class MetricsOptions:
    """Metrics and health endpoints (``pip install 'zodworker[metrics]'``):
    ``ZodWorker(metrics=MetricsOptions(port=9464))`` or ``zodworker run --metrics-port 9464``.
    The metrics are listed in the README and in :mod:`zodworker.observe.instruments`."""

    port: int | None = None
    """Serve ``/metrics``, ``/healthz`` and ``/readyz`` on this port (0: any free one).
    None: no endpoint; the metrics still go to ``registry`` and OpenTelemetry."""
    host: str = "0.0.0.0"
    """Address to listen on (all interfaces by default, so a scraper can reach it)."""
    interval: float = 15.0
    """Seconds between the bounded counts of the jobs table behind the state gauges."""
    prometheus: bool = True
    """Keep Prometheus metrics (prometheus-client) in ``registry``."""
    otel: bool | None = None
    """Mirror the metrics as OpenTelemetry instruments; None: when OpenTelemetry is
    installed."""
    registry: Any = None
    """A prometheus-client ``CollectorRegistry`` to add zodworker's metrics to (yours, to
    serve them with the rest of your app's); None: a registry of its own."""
    meter_provider: Any = None
    """The OpenTelemetry ``MeterProvider``; None: the global one."""
    queue_label: Callable[[str], str] | None = None
    """Maps a queue name to its label value, e.g. ``lambda q: q.split(":")[0]`` when queue
    names carry ids; None: the name itself."""
    max_queues: int = 100
    """At most this many distinct queue label values; the rest are counted as ``_other``."""

    def __post_init__(self) -> None:
        if self.port is not None and (
            isinstance(self.port, bool)
            or not isinstance(self.port, int)
            or not 0 <= self.port <= 65535
        ):
            raise ConfigError("metrics.port", f"is {self.port!r}; expected a port, 0 to 65535")
        if not isinstance(self.host, str) or not self.host:
            raise ConfigError("metrics.host", "must be an address such as 0.0.0.0 or 127.0.0.1")
        if isinstance(self.interval, bool) or not (
            isinstance(self.interval, (int, float)) and 0.1 <= self.interval <= _MAX_SECONDS
        ):
            raise ConfigError("metrics.interval", f"is {self.interval!r}; expected 0.1 or more")
        if isinstance(self.max_queues, bool) or not (
            isinstance(self.max_queues, int) and 1 <= self.max_queues <= 100_000
        ):
            raise ConfigError("metrics.max_queues", "must be an integer from 1 to 100000")
        if self.queue_label is not None and not callable(self.queue_label):
            raise ConfigError("metrics.queue_label", "must be a function of the queue name")
