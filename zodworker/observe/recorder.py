"""From what a process does to metric values: the recorder listens to the worker's events
(counters and histograms, updated as jobs finish) and keeps the state the gauges show (the
last bounded count of the jobs table, the pool's slots, LISTEN and lease).

It writes to *backends* (:mod:`.prom`, :mod:`.otel`) through a small protocol, so the
Prometheus exposition and the OpenTelemetry mirror always carry the same numbers. A
backend caches its labelled children, so a finished job costs a couple of dictionary
lookups and one increment per backend.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from ..events import Event, Events
from .instruments import INSTRUMENTS

__all__ = ["Backend", "GaugeSamples", "MetricsRecorder", "PoolView", "QueueLabels", "StateSnapshot"]

Labels = tuple[str, ...]
GaugeSamples = dict[str, list[tuple[Labels, float]]]
"""Gauge values by instrument name: (label values, value) pairs."""
OTHER = "_other"


class Backend(Protocol):
    """Where metric values go."""

    def add(self, name: str, labels: Labels, amount: float) -> None:
        """Add to a counter."""

    def observe(self, name: str, labels: Labels, value: float) -> None:
        """Record a histogram observation."""


class PoolView(Protocol):
    """What the recorder reads of the pool (``WorkerPool.stats()``)."""

    @property
    def concurrency(self) -> int: ...
    @property
    def running(self) -> int: ...


@dataclass(frozen=True, slots=True)
class StateSnapshot:
    """One bounded count of the jobs table."""

    jobs: dict[tuple[str, str], float] = field(default_factory=dict)
    """(task, state) -> jobs."""
    exact: bool = True
    oldest_ready_age: dict[str, float] = field(default_factory=dict)
    """queue label -> seconds the oldest ready job has waited."""
    seconds: float = 0.0
    """How long the query took."""
    limits: dict[tuple[str, str], float] = field(default_factory=dict)
    """(limit, state: running or waiting) -> jobs."""


class QueueLabels:
    """Turns queue names into label values: ``label(name)`` for the first ``limit`` distinct
    values, ``_other`` after that (a warning once), so a queue per customer or per run cannot
    blow up the number of series."""

    def __init__(
        self, label: Callable[[str], str] | None, limit: int, logger: logging.Logger
    ) -> None:
        self._label = label
        self._limit = limit
        self._logger = logger
        self._known: dict[str | None, str] = {None: ""}
        self._values: set[str] = {""}
        self._warned = False

    def __call__(self, queue: str | None) -> str:
        found = self._known.get(queue)
        if found is not None:
            return found
        assert queue is not None
        value = queue if self._label is None else self._label(queue)
        if value not in self._values:
            if len(self._values) >= self._limit:
                if not self._warned:
                    self._warned = True
                    self._logger.warning(
                        "more than %d distinct queue label values; the rest are counted as %r "
                        "(set MetricsOptions.queue_label to group queue names)",
                        self._limit,
                        OTHER,
                    )
                value = OTHER
            self._values.add(value)
        self._known[queue] = value
        return value


class MetricsRecorder:
    """Counters and histograms from events; gauge state for the backends to read."""

    def __init__(
        self,
        backends: Iterable[Backend],
        *,
        queue_labels: QueueLabels,
        pool: Callable[[], PoolView | None] = lambda: None,
        listening: bool = False,
    ) -> None:
        self._backends = list(backends)
        self._queue = queue_labels
        self._pool = pool
        self.state = StateSnapshot()
        self.listen_connected: bool | None = False if listening else None
        """None when the pool does not LISTEN (poll only, or no pool)."""
        self.lease_held: bool | None = None
        self._off: list[Callable[[], None]] = []

    def attach(self, events: Events) -> None:
        """Start listening to ``events`` (until :meth:`detach`)."""
        handlers: dict[str, Callable[[Event], None]] = {
            "job:start": self._started,
            "job:complete": self._finished,
            "pool:recovered": self._recovered,
            "cron:scheduled": self._cron,
            "pool:create": self._lease(True),
            "pool:leaseRegained": self._lease(True),
            "pool:leaseLost": self._lease_lost,
            "pool:release": self._lease(None),
            "pool:listen:success": self._listen(True),
            "pool:listen:error": self._listen(False),
            "pool:listen:release": self._listen(False),
        }
        self._off = [events.on(name, handler) for name, handler in handlers.items()]

    def detach(self) -> None:
        for off in self._off:
            off()
        self._off = []

    # ------------------------------------------------------------------ events

    def _started(self, event: Event) -> None:
        job = event.job
        assert job is not None
        latency = max(0.0, time.time() - job.run_at.timestamp())
        for backend in self._backends:
            backend.observe("zodworker_job_queue_latency_seconds", (job.task_identifier,), latency)

    def _finished(self, event: Event) -> None:
        job = event.job
        assert job is not None
        labels = (job.task_identifier, self._queue(job.queue_name), event.data["outcome"])
        duration = event.duration or 0.0
        for backend in self._backends:
            backend.add("zodworker_jobs", labels, 1)
            backend.observe("zodworker_job_duration_seconds", labels[:1], duration)

    def _recovered(self, event: Event) -> None:
        self._add("zodworker_jobs_recovered", (), len(event.data.get("job_ids", ())))

    def _cron(self, event: Event) -> None:
        for identifier in event.data.get("added", ()):
            self._add("zodworker_cron_jobs", (str(identifier),), 1)

    def _lease_lost(self, event: Event) -> None:
        self.lease_held = False
        self._add("zodworker_lease_lost", (), 1)

    def _lease(self, held: bool | None) -> Callable[[Event], None]:
        def set_held(event: Event) -> None:
            self.lease_held = held

        return set_held

    def _listen(self, up: bool) -> Callable[[Event], None]:
        def set_up(event: Event) -> None:
            self.listen_connected = up

        return set_up

    def _add(self, name: str, labels: Labels, amount: float) -> None:
        if amount:
            for backend in self._backends:
                backend.add(name, labels, amount)

    # ------------------------------------------------------------------ gauges

    def gauges(self) -> GaugeSamples:
        """Every gauge's samples now (for a scrape or an OpenTelemetry collection)."""
        state = self.state
        samples: GaugeSamples = {i.name: [] for i in INSTRUMENTS if i.kind == "gauge"}
        samples["zodworker_queued_jobs"] = [(key, n) for key, n in sorted(state.jobs.items())]
        samples["zodworker_queued_jobs_exact"] = [((), 1.0 if state.exact else 0.0)]
        samples["zodworker_oldest_ready_job_age_seconds"] = [
            ((queue,), age) for queue, age in sorted(state.oldest_ready_age.items())
        ]
        samples["zodworker_state_query_seconds"] = [((), state.seconds)]
        samples["zodworker_limit_jobs"] = [(key, n) for key, n in sorted(state.limits.items())]
        pool = self._pool()
        if pool is not None:
            busy = pool.running
            samples["zodworker_slots"] = [
                (("busy",), float(busy)),
                (("free",), float(max(0, pool.concurrency - busy))),
            ]
        if self.listen_connected is not None:
            samples["zodworker_listen_connected"] = [((), float(self.listen_connected))]
        if self.lease_held is not None:
            samples["zodworker_lease_held"] = [((), float(self.lease_held))]
        return samples
