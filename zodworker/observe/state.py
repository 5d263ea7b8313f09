"""The gauges' one bounded query: jobs by task and state, the oldest ready job per queue and
the jobs under each limit, from the admin's statistics plan (exact up to a bound, a sample
of the table's pages above it), run every ``MetricsOptions.interval`` seconds by one loop
per process, never per scrape.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from ..db.admin_plans import DEFAULT_BOUND
from ..db.limit_plans import plan_stats_and_limits
from ..db.rows import AsyncTarget
from ..db.runner import AsyncRunner
from .recorder import QueueLabels, StateSnapshot

__all__ = ["StateQuery"]


class StateQuery(AsyncRunner):
    """Counts the jobs table of one schema for the gauges."""

    __slots__ = ()

    async def snapshot(
        self, target: AsyncTarget, labels: QueueLabels, max_queues: int, bound: int = DEFAULT_BOUND
    ) -> StateSnapshot:
        """Count now; ``max_queues`` bounds the queues whose oldest ready job is reported
        (the ones that waited longest)."""
        started = time.perf_counter()
        stats = await self._run(target, plan_stats_and_limits(self.schema, bound))
        jobs: dict[tuple[str, str], float] = {}
        for row in stats.rows:
            key = (row.task or "", row.state)
            jobs[key] = jobs.get(key, 0.0) + row.count.value
        now = datetime.now(UTC)
        ages: dict[str, float] = {}
        oldest = sorted(stats.oldest_ready.items(), key=lambda item: item[1])[:max_queues]
        for queue, due in oldest:
            label = labels(queue)
            ages[label] = max(ages.get(label, 0.0), max(0.0, (now - due).total_seconds()))
        limits: dict[tuple[str, str], float] = {}
        for info in stats.limits:
            limits[(info.name, "running")] = float(info.running)
            limits[(info.name, "waiting")] = float(info.waiting.value)
        return StateSnapshot(jobs, stats.exact, ages, time.perf_counter() - started, limits)
