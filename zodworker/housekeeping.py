"""The typed client's housekeeping: cleanup of old dead jobs, queue metrics, the reporter.

These are the loops ``ZodWorker(cleanup=..., reporter=...)`` asks for, built as
:class:`~zodworker.worker.maintenance.Periodic` loops that the service runs, and the two
queries behind ``client.cleanup_now()`` and ``client.metrics()`` (through
:mod:`zodworker.db.admin`). A reporter that raises is logged and ignored.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from .config import Cleanup, Reporter
from .db import admin
from .db.rows import AsyncTarget
from .events import Event
from .worker.maintenance import Periodic
from .worker.pool import PoolStats

__all__ = ["cleanup", "housekeeping_loops", "metrics", "report", "report_failures"]

logger = logging.getLogger("zodworker.client")


async def cleanup(target: AsyncTarget, schema: str, policy: Cleanup) -> int:
    """Delete up to ``policy.max_count`` permanently failed jobs older than ``policy.ttl``
    seconds (through ``complete_jobs``); return how many."""
    return await admin.cleanup_dead_jobs(target, schema, ttl=policy.ttl, max_count=policy.max_count)


async def metrics(target: AsyncTarget, schema: str, stats: PoolStats | None) -> dict[str, Any]:
    """Jobs ready to run per task (from the available-jobs index) and this process's running
    and locally held jobs."""
    by_task = await admin.runnable_by_task(target, schema)
    return {
        "runnable": sum(by_task.values()),
        "runnable_by_task": by_task,
        "running": 0 if stats is None else stats.running,
        "held": 0 if stats is None else stats.buffered,
    }


def report(reporter: Reporter, event: str, props: dict[str, Any]) -> None:
    """Call the reporter; its exceptions are logged, never raised."""
    try:
        reporter(event, props)
    except Exception:
        logger.exception("reporter raised on %s; ignored", event)


def report_failures(reporter: Reporter) -> Callable[[Event], None]:
    """A ``job:failed`` listener that tells the reporter about permanent failures."""

    def on_failed(event: Event) -> None:
        job = event.job
        props = {
            "job_id": None if job is None else job.id,
            "task": None if job is None else job.task_identifier,
            "attempts": None if job is None else job.attempts,
            "error": None if event.error is None else str(event.error),
        }
        report(reporter, "job:failed", props)

    return on_failed


def housekeeping_loops(
    target: AsyncTarget,
    schema: str,
    *,
    cleanup_policy: Cleanup | None,
    reporter: Reporter | None,
    metrics_interval: float,
    stats: Callable[[], PoolStats | None],
    log: logging.Logger,
) -> list[Periodic]:
    """The cleanup and metrics loops the client's options ask for (run at once, then every
    interval)."""
    loops = []
    if cleanup_policy is not None:
        policy = cleanup_policy

        async def clean() -> int:
            removed = await cleanup(target, schema, policy)
            if removed:
                log.info("cleanup removed %d permanently failed jobs", removed)
            return removed

        loops.append(
            Periodic(clean, interval=policy.interval, name="cleanup", logger=log, first_after=False)
        )
    if reporter is not None:
        chosen = reporter

        async def report_metrics() -> None:
            report(chosen, "metrics", await metrics(target, schema, stats()))

        loops.append(
            Periodic(
                report_metrics,
                interval=metrics_interval,
                name="metrics",
                logger=log,
                first_after=False,
            )
        )
    return loops
