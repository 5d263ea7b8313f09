"""The observer: one process's metrics, its state loop and its operations endpoint.

The service starts it before the worker pool (so no job's events are missed) and stops it
after. It owns the recorder, the backends (Prometheus, the OpenTelemetry mirror), the loop
that counts the jobs table every ``interval`` seconds, and the HTTP endpoint.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import anyio
from anyio.abc import TaskStatus

from ..config import MetricsOptions
from ..db.connect import Database
from ..errors import ConfigError
from ..events import Events
from ..worker.maintenance import Periodic
from ..worker.pool import PoolStats
from .http import OpsServer
from .otel import OtelBackend, otel_available
from .prom import PromBackend, exposition
from .recorder import Backend, MetricsRecorder, QueueLabels
from .state import StateQuery

__all__ = ["Observer"]

_PING_TIMEOUT = 2.0


class Observer:
    """Metrics and health of one process (see the module docs)."""

    def __init__(
        self,
        options: MetricsOptions,
        *,
        events: Events,
        database: Database,
        schema: str,
        pool: Callable[[], PoolStats | None],
        listening: bool,
        logger: logging.Logger,
    ) -> None:
        self.options = options
        self._events = events
        self._database = database
        self._pool = pool
        self._logger = logger
        self._labels = QueueLabels(options.queue_label, options.max_queues, logger)
        self._state = StateQuery(schema)
        backends: list[Backend] = []
        self._prom: PromBackend | None = None
        if options.prometheus:
            self._prom = PromBackend(self._gauges, options.registry)
            backends.append(self._prom)
        elif options.port is not None:
            raise ConfigError("metrics.port", "serving /metrics needs prometheus=True")
        if options.otel or (options.otel is None and otel_available()):
            backends.append(OtelBackend(self._gauges, options.meter_provider))
        self.recorder = MetricsRecorder(
            backends, queue_labels=self._labels, pool=pool, listening=listening
        )
        self._server: OpsServer | None = None

    @property
    def registry(self) -> Any:
        """The prometheus-client registry holding the metrics (None without Prometheus)."""
        return None if self._prom is None else self._prom.registry

    @property
    def port(self) -> int | None:
        """The port the endpoint listens on (None when not serving)."""
        return None if self._server is None else self._server.port

    def _gauges(self) -> dict[str, list[tuple[tuple[str, ...], float]]]:
        return self.recorder.gauges()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Record until cancelled; serve the endpoint when a port is set."""
        options = self.options
        self.recorder.attach(self._events)
        try:
            if options.port is not None:
                self._server = self._serve(options.host, options.port)
            task_status.started()
            count = Periodic(
                self.count_now,
                interval=options.interval,
                name="counting jobs for metrics",
                logger=self._logger,
                first_after=False,
            )
            await count.run()
        finally:
            self.recorder.detach()
            if self._server is not None:
                await anyio.to_thread.run_sync(self._server.close)
                self._server = None
            if self._prom is not None:
                self._prom.close()

    def _serve(self, host: str, port: int) -> OpsServer:
        prom = self._prom
        metrics = None if prom is None else lambda accept: exposition(prom.registry, accept)
        try:
            server = OpsServer(
                host,
                port,
                loop=asyncio.get_running_loop(),
                readiness=self.readiness,
                metrics=metrics,
                logger=self._logger,
            )
        except OSError as exc:
            raise ConfigError(
                "metrics.port", f"cannot listen on {host}:{port} ({exc}); choose another port"
            ) from exc
        server.start()
        self._logger.info(
            "serving /metrics, /healthz and /readyz on http://%s:%d", host, server.port
        )
        return server

    async def count_now(self) -> None:
        """Count the jobs table for the state gauges (the loop does this every interval)."""
        self.recorder.state = await self._state.snapshot(
            self._database.connections, self._labels, self.options.max_queues
        )

    async def readiness(self) -> dict[str, str]:
        """Each readiness check: "ok" or what is wrong."""
        checks: dict[str, str] = {}
        try:
            with anyio.fail_after(_PING_TIMEOUT):
                await self._database.ping()
            checks["database"] = "ok"
        except TimeoutError:
            checks["database"] = f"no answer within {_PING_TIMEOUT:.0f}s"
        except Exception as exc:
            checks["database"] = f"error: {exc}"
        stats = self._pool()
        if stats is not None:
            checks["pool"] = "ok" if stats.state == "running" else stats.state
            held = self.recorder.lease_held
            checks["lease"] = "ok" if held else ("lost" if held is False else "none")
        listening = self.recorder.listen_connected
        if listening is not None:
            checks["listen"] = "ok" if listening else "not connected"
        return checks
