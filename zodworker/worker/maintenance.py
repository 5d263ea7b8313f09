"""Housekeeping loops: periodic actions that must never take the worker down.

:class:`Periodic` runs one plain async function every ``interval`` seconds (or a random
interval), logging failures and carrying on. The pool uses it for graphile-worker's sweep of
locks older than 4 hours (every 8-10 minutes, with ``resetLocked:*`` events); the composition
uses it for the typed client's cleanup of old permanently failed jobs and its metrics.
:func:`pool_loops` builds the pool's loops: that sweep, and polling for what operators asked
through the admin API (the fallback of its NOTIFY): cancellations of jobs running here, and
paused queues whose lock was cleared.
"""

from __future__ import annotations

import asyncio
import difflib
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Final

import anyio
from anyio.abc import TaskStatus

SWEEP_EVERY: Final = (8 * 60.0, 10 * 60.0)
"""Seconds between two of graphile-worker's stale-lock sweeps (random in this range)."""

__all__ = ["SWEEP_EVERY", "Periodic", "pool_loops", "unserved_warning"]


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
        first_before_started: bool = False,
        on_start: Callable[[], None] | None = None,
        on_success: Callable[[object], None] | None = None,
        on_failure: Callable[[Exception], None] | None = None,
    ) -> None:
        """``interval``: seconds, or ``(low, high)`` for a random pause each time.
        ``first_after``: wait one interval before the first run (else run at once).
        ``first_before_started``: run once before reporting started, so that a task group's
        ``start()`` returns after that first run."""
        self._action = action
        self._interval = interval
        self._name = name
        self._logger = logger
        self._first_after = first_after
        self._first_before_started = first_before_started
        self._on_start = on_start
        self._on_success = on_success
        self._on_failure = on_failure

    def _pause(self) -> float:
        if isinstance(self._interval, tuple):
            return random.uniform(*self._interval)
        return self._interval

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Run the action until cancelled."""
        if self._first_before_started:
            await self.run_once()
        task_status.started()
        if self._first_after or self._first_before_started:
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


def pool_loops(
    *,
    reset_stale_locks: Callable[[], Awaitable[object]] | None,
    cancellations_for: Callable[[list[int]], Awaitable[list[int]]],
    reapply_pauses: Callable[[], Awaitable[None]],
    reconcile_limits: Callable[[], Awaitable[int]],
    tidy_limits: Callable[[], Awaitable[None]],
    prune_history: Callable[[float | None, int | None], Awaitable[int]],
    retention: tuple[float | None, int | None],
    live_pools: Callable[[], Awaitable[int]],
    on_live_pools: Callable[[int], None],
    running_ids: Callable[[], set[int]],
    cancel_job: Callable[[int], object],
    unserved_tasks: Callable[[float], Awaitable[list[tuple[str, int, datetime]]]] | None,
    unserved_every: float,
    own_tasks: Callable[[], Sequence[str]],
    emit: Callable[..., None],
    logger: logging.Logger,
) -> list[Periodic]:
    """A pool's maintenance: graphile-worker's stale-lock sweep every 8-10 minutes (unless
    ``reset_stale_locks`` is None); cancellations of jobs running here, every second; paused
    queues whose lock someone cleared, paused again before the first fetch and every 10 s
    (the fetch itself does not look at pauses: that would cost every fetch); the limits'
    housekeeping (slots of jobs others unlocked) every 8-12 s, and its rare part (limits of
    jobs others removed) every 4-6 minutes; pruning the job history to ``retention`` (age
    in seconds, rows kept) every 50-70 s, in short batches; the number of
    live pools, at start and every 10 s, for ``on_live_pools`` (fetch-ahead); the warning
    about jobs waiting for tasks no live pool runs (:func:`unserved_warning`, unless
    ``unserved_tasks`` is None) every ``unserved_every`` seconds."""

    async def count_pools() -> None:
        on_live_pools(await live_pools())

    async def cancel() -> None:
        running = list(running_ids())
        for job_id in await cancellations_for(running) if running else []:
            cancel_job(job_id)

    async def prune() -> None:
        await prune_history(*retention)

    loops = [
        Periodic(cancel, interval=1.0, name="polling for cancellations", logger=logger),
        Periodic(
            reapply_pauses,
            interval=10.0,
            name="re-pausing queues",
            logger=logger,
            first_before_started=True,  # before the first fetch
        ),
        Periodic(
            count_pools, interval=10.0, name="counting live pools", logger=logger, first_after=False
        ),
        Periodic(reconcile_limits, interval=(8.0, 12.0), name="reconciling limits", logger=logger),
        Periodic(tidy_limits, interval=(240.0, 360.0), name="tidying limits", logger=logger),
        Periodic(prune, interval=(50.0, 70.0), name="pruning history", logger=logger),
    ]
    if reset_stale_locks is not None:
        sweep = Periodic(
            reset_stale_locks,
            interval=SWEEP_EVERY,
            name="the stale-lock sweep",
            logger=logger,
            on_start=lambda: emit("resetLocked:started"),
            on_success=lambda _: emit("resetLocked:success"),
            on_failure=lambda exc: emit("resetLocked:failure", error=exc),
        )
        loops.insert(0, sweep)
    if unserved_tasks is not None:
        warn = unserved_warning(
            unserved_tasks, waited=unserved_every, own_tasks=own_tasks, logger=logger
        )
        loops.append(Periodic(warn, interval=unserved_every, name="unserved tasks", logger=logger))
    return loops


def unserved_warning(
    find: Callable[[float], Awaitable[list[tuple[str, int, datetime]]]],
    *,
    waited: float,
    own_tasks: Callable[[], Sequence[str]],
    logger: logging.Logger,
) -> Callable[[], Awaitable[None]]:
    """An action warning once per task about jobs that have been ready for over ``waited``
    seconds for a task no live zodworker pool runs (``find(waited)`` lists them)."""

    async def warn() -> None:
        for identifier, count, oldest in await find(waited):
            own = sorted(own_tasks())
            close = difflib.get_close_matches(identifier, own, n=3)
            hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
            logger.warning(
                "%d%s jobs of task %r have been ready for over %.0fs (the oldest since %s) "
                "and no live zodworker pool runs that task (this pool runs %s)%s Start a "
                "worker with it, or fix the task name; ignore this if a graphile-worker "
                "(Node) worker runs it.",
                count,
                "+" if count >= 10_000 else "",
                identifier,
                waited,
                oldest.isoformat(timespec="seconds"),
                ", ".join(own[:10]) + (", ..." if len(own) > 10 else ""),
                hint + "." if hint else ".",
                extra={"task": identifier, "waiting_jobs": count},
            )

    return warn
