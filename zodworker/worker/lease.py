"""The pool's lease on its jobs: heartbeats, and reaping the pools that stopped beating.

Every pool has a row in ``_zodworker_pools`` that its heartbeat refreshes every
``heartbeat_interval``, on a connection of its own. On each beat the pool also reaps: a pool
silent for ``recovery_timeout`` is presumed dead (SIGKILL, lost machine), its row is deleted
and the job and queue locks it held are released, so its jobs run again within seconds
instead of graphile-worker's 4 hours. A beat that finds its own row gone means this pool was
presumed dead; it registers again. The lease is handed its statements as plain functions.

Pool states, as the heartbeat table sees them::

    registered --beat--> registered --silent > recovery_timeout--> reaped (locks released)
         '--unregister (clean stop)--> gone        reaped --own beat finds no row--> registered
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import anyio
from anyio.abc import TaskStatus

__all__ = ["Lease"]


class Lease:
    """The heartbeat and reaping loop of one pool."""

    def __init__(
        self,
        *,
        heartbeat: Callable[[], Awaitable[bool]],
        register: Callable[[], Awaitable[None]],
        reap: Callable[[float], Awaitable[list[int]]],
        interval: float,
        recovery_timeout: float,
        on_released: Callable[[list[int]], None],
        logger: logging.Logger,
    ) -> None:
        self._heartbeat = heartbeat
        self._register = register
        self._reap = reap
        self._interval = interval
        self._recovery_timeout = recovery_timeout
        self._on_released = on_released
        self._logger = logger

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Beat and reap every ``interval`` until cancelled."""
        task_status.started()
        while True:
            await asyncio.sleep(self._interval)
            try:
                if not await self._heartbeat():
                    self._logger.error(
                        "this pool was presumed dead (no heartbeat for %ss) and its locks were "
                        "released; re-registering",
                        self._recovery_timeout,
                    )
                    await self._register()
                released = await self._reap(self._recovery_timeout)
            except Exception as exc:
                self._logger.warning("heartbeat failed: %s", exc)
                continue
            if released:
                self._logger.warning("released %d jobs of dead pools", len(released))
                self._on_released(released)
