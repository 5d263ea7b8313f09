"""Housekeeping loops: periodic actions that must never take the worker down.

:class:`Periodic` runs one plain async function every ``interval`` seconds (or a random
interval), logging failures and carrying on. The pool uses it for graphile-worker's sweep of
locks older than 4 hours (every 8-10 minutes, with ``resetLocked:*`` events); the composition
uses it for the typed client's cleanup of old permanently failed jobs and its metrics.
:func:`operator_loops` polls for what operators asked through the admin API, the fallback
of its NOTIFY: cancellations of jobs running here, and paused queues whose lock was cleared.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable

import anyio
from anyio.abc import TaskStatus

__all__ = ["Periodic", "operator_loops"]


class Periodic:
    """Runs ``action()`` repeatedly until cancelled (see the module docs)."""

    def __init__(
        self,
        action: Callable[[], Awaitable[object]],
        *,
        interval: float | tuple[float, float],
        name: str,
        logger: logging.Logger,
        first_after: bool = True,
        on_start: Callable[[], None] | None = None,
        on_success: Callable[[object], None] | None = None,
        on_failure: Callable[[Exception], None] | None = None,
    ) -> None:
        """``interval``: seconds, or ``(low, high)`` for a random pause each time.
        ``first_after``: wait one interval before the first run (else run at once)."""
        self._action = action
        self._interval = interval
        self._name = name
        self._logger = logger
        self._first_after = first_after
        self._on_start = on_start
        self._on_success = on_success
        self._on_failure = on_failure

    def _pause(self) -> float:
        if isinstance(self._interval, tuple):
            return random.uniform(*self._interval)
        return self._interval

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Run the action until cancelled."""
        task_status.started()
        if self._first_after:
            await asyncio.sleep(self._pause())
        while True:
            await self.run_once()
            await asyncio.sleep(self._pause())

    async def run_once(self) -> None:
        """Run the action once, reporting its outcome; never raises an ``Exception``."""
        if self._on_start is not None:
            self._on_start()
        try:
            result = await self._action()
        except Exception as exc:  # never let housekeeping take the worker down
            self._logger.warning("%s failed: %s", self._name, exc)
            if self._on_failure is not None:
                self._on_failure(exc)
            return
        if self._on_success is not None:
            self._on_success(result)


def operator_loops(
    *,
    cancellations_for: Callable[[list[int]], Awaitable[list[int]]],
    reapply_pauses: Callable[[], Awaitable[None]],
    running_ids: Callable[[], set[int]],
    cancel_job: Callable[[int], object],
    logger: logging.Logger,
) -> list[Periodic]:
    """Cancellations of jobs running here, every second; paused queues whose lock someone
    cleared, paused again every 10 s."""

    async def cancel() -> None:
        running = list(running_ids())
        for job_id in await cancellations_for(running) if running else []:
            cancel_job(job_id)

    return [
        Periodic(cancel, interval=1.0, name="polling for cancellations", logger=logger),
        Periodic(
            reapply_pauses,
            interval=10.0,
            name="re-pausing queues",
            logger=logger,
            first_after=False,
        ),
    ]
