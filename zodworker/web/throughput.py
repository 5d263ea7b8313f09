"""Throughput for the dashboard: jobs per minute, from counters sampled about once a second.

Each zodworker pool writes its totals (completed, failed attempts) with every heartbeat;
PostgreSQL counts the rows deleted from the jobs table (every completion, Node workers'
too). :class:`Meter` keeps the increases seen over the last minute. A pool seen for the
first time sets a baseline (its earlier work is not counted as new) unless it started after
the previous sample; a pool that goes away simply stops adding.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from ..admin import Deleted, WorkerInfo

__all__ = ["Meter", "Rates"]

WINDOW: Final = 60.0
MIN_SPACING: Final = 0.9


@dataclass(frozen=True, slots=True)
class Rates:
    """Per minute over ``span`` seconds (None when nothing has been measured yet)."""

    completed: float | None
    failed: float | None
    deleted: float | None
    span: float


class Meter:
    """Increases of the counters over a sliding minute (one per dashboard process)."""

    def __init__(self, now: Callable[[], float] = time.monotonic) -> None:
        self._now = now
        self._pools: dict[str, tuple[int, int]] = {}
        self._deleted: int | None = None
        self._db_clock: datetime | None = None
        self._last: float | None = None
        # (from, to, completed, failed, deleted) increases between two samples
        self._steps: deque[tuple[float, float, int, int, int | None]] = deque()

    def due(self) -> bool:
        """Whether a new sample is worth taking (at most about one a second)."""
        return self._last is None or self._now() - self._last >= MIN_SPACING

    def add(self, workers: Sequence[WorkerInfo] | None, deleted: Deleted | None) -> None:
        """Record a sample: the live pools' totals (None: no zodworker tables) and the
        deleted-rows total with the database's clock (None: unknown). A pool seen for the
        first time counts from zero if it started after the previous sample, else its
        totals are a baseline."""
        now = self._now()
        completed = failed = 0
        pools: dict[str, tuple[int, int]] = {}
        for worker in workers or ():
            pools[worker.pool_id] = (worker.completed, worker.failed)
            before = self._pools.get(worker.pool_id)
            if before is None and self._db_clock is not None:
                before = (0, 0) if worker.started_at > self._db_clock else None
            if before is not None:
                completed += max(0, worker.completed - before[0])
                failed += max(0, worker.failed - before[1])
        gone: int | None = None
        if deleted is not None and self._deleted is not None:
            gone = max(0, deleted.total - self._deleted)
        if self._last is not None:
            self._steps.append((self._last, now, completed, failed, gone))
        self._pools, self._last = pools, now
        self._deleted = None if deleted is None else deleted.total
        self._db_clock = None if deleted is None else deleted.at
        while self._steps and now - self._steps[0][0] > WINDOW:
            self._steps.popleft()

    def rates(self, *, pools_known: bool = True) -> Rates:
        """Jobs per minute over the steps of the last minute (scaled while it is shorter)."""
        if not self._steps:
            return Rates(None, None, None, 0.0)
        span = self._steps[-1][1] - self._steps[0][0]
        if span <= 0:
            return Rates(None, None, None, 0.0)
        scale = 60.0 / span
        deleted = [gone for *_, gone in self._steps if gone is not None]
        return Rates(
            sum(step[2] for step in self._steps) * scale if pools_known else None,
            sum(step[3] for step in self._steps) * scale if pools_known else None,
            sum(deleted) * scale if deleted else None,
            span,
        )
