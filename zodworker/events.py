"""Events a worker pool emits, with graphile-worker's names, and a small subscribe API.

::

    events = Events()
    unsubscribe = events.on("job:success", lambda e: print(e.job.id, e.duration))
    events.on("*", log_everything)

A listener is called synchronously with one :class:`Event`; it must not block. An exception
in a listener is logged and never reaches the worker. Emitting an event nobody listens to
costs one dictionary lookup, so the hot path stays cheap.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from .job import Job

__all__ = ["EVENT_NAMES", "Event", "EventName", "Events", "Listener"]

EventName = Literal[
    "pool:create",
    "pool:listen:connecting",
    "pool:listen:success",
    "pool:listen:error",
    "pool:listen:notification",
    "pool:listen:release",
    "pool:release",
    "pool:gracefulShutdown",
    "pool:forcefulShutdown",
    "pool:recovered",
    "pool:leaseLost",
    "pool:leaseRegained",
    "worker:create",
    "worker:release",
    "worker:stop",
    "worker:getJob:start",
    "worker:getJob:error",
    "worker:getJob:empty",
    "worker:fatalError",
    "job:start",
    "job:success",
    "job:error",
    "job:failed",
    "job:complete",
    "job:timeout",
    "cron:starting",
    "cron:started",
    "cron:backfill",
    "cron:prematureTimer",
    "cron:overdueTimer",
    "cron:schedule",
    "cron:scheduled",
    "resetLocked:started",
    "resetLocked:success",
    "resetLocked:failure",
    "gracefulShutdown",
    "forcefulShutdown",
    "stop",
]
"""Every event name. ``pool:recovered`` (locks of dead pools released),
``pool:leaseLost`` / ``pool:leaseRegained`` (this pool lost its lease and started a new
one) and ``job:timeout`` are ours; the rest are graphile-worker's."""

EVENT_NAMES: Final = frozenset(EventName.__args__)  # type: ignore[attr-defined]

logger = logging.getLogger("zodworker.events")


@dataclass(frozen=True, slots=True)
class Event:
    """One occurrence. Fields that do not apply to an event are None."""

    name: str
    pool_id: str
    job: Job | None = None
    error: BaseException | None = None
    duration: float | None = None
    """Seconds, for job:success / job:error / job:complete (handler run time)."""
    data: dict[str, Any] = field(default_factory=dict)
    """Anything else the event carries (e.g. ``count`` for pool:listen:notification;
    ``want`` and ``buffered``, the jobs asked for and those still held, for
    worker:getJob:start)."""


Listener = Callable[[Event], object]


class Events:
    """A registry of listeners by event name (``"*"`` receives every event)."""

    __slots__ = ("_listeners",)

    def __init__(self) -> None:
        self._listeners: dict[str, list[Listener]] = {}

    def on(self, name: str, listener: Listener) -> Callable[[], None]:
        """Call ``listener`` on every ``name`` event; return a function that unsubscribes."""
        if name != "*" and name not in EVENT_NAMES:
            raise ValueError(
                f"unknown event name {name!r}; known: {', '.join(sorted(EVENT_NAMES))}"
            )
        self._listeners.setdefault(name, []).append(listener)

        def off() -> None:
            listeners = self._listeners.get(name, [])
            if listener in listeners:
                listeners.remove(listener)
            if not listeners:
                self._listeners.pop(name, None)

        return off

    def wants(self, name: str) -> bool:
        """Whether anyone listens to ``name`` (so callers can skip building the event)."""
        return name in self._listeners or "*" in self._listeners

    def emit(
        self,
        name: EventName,
        pool_id: str,
        *,
        job: Job | None = None,
        error: BaseException | None = None,
        duration: float | None = None,
        **data: Any,
    ) -> None:
        """Deliver an event to its listeners (a no-op when there are none)."""
        specific = self._listeners.get(name)
        anything = self._listeners.get("*")
        if specific is None and anything is None:
            return
        event = Event(name, pool_id, job, error, duration, data)
        for listener in (*(specific or ()), *(anything or ())):
            try:
                listener(event)
            except Exception:
                logger.exception("listener for %s raised; ignored", name)
