"""What a worker pool reports about itself (:meth:`zodworker.worker.pool.WorkerPool.stats`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["PoolStats"]


@dataclass(frozen=True, slots=True)
class PoolStats:
    """A snapshot of a worker pool."""

    state: Literal["new", "starting", "running", "stopping", "stopped"]
    concurrency: int
    running: int
    """Jobs whose handlers are running now."""
    buffered: int
    """Jobs fetched and held locally, not started yet."""
    idle_slots: int
    """Slots waiting for a job."""
