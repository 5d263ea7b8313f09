"""Wake-ups from PostgreSQL: LISTEN on the channels in :data:`CHANNELS`, reconnecting.

The listener is handed ``listen(channels, verify=...)`` (a dedicated connection's
notifications, from the database layer) and plain functions: ``on_jobs()`` when jobs were
added (the local queue fetches), ``on_breaking(revision)`` when a breaking migration was
applied (the pool shuts down and exits 57, as graphile-worker does), ``on_cancel(job_id)``
when an operator cancelled a job (aborted if it runs here), and ``on_limits()`` when
limited jobs may have room (added, slots freed, a limit changed: see
:mod:`zodworker.worker.limited`). After every
(re)connection it calls ``on_jobs()`` once, to catch up on anything added while nobody
listened. A lost connection is retried with jittered exponential backoff capped at 60 s;
polling covers the gap.

Its first connection is part of the pool's start: it checks that a notification really
arrives (``verify``); when it does not (PgBouncer in transaction mode), the start fails with
a :class:`~zodworker.errors.ConfigError` that names ``listen_connection`` and ``poll_only``.
If the first connection cannot be made at all, the pool starts anyway and keeps trying.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, Final

import anyio
import msgspec
from anyio.abc import TaskStatus

from ..errors import ConfigError

__all__ = ["CHANNELS", "Listener"]

CHANNELS: Final = ("jobs:insert", "worker:migrate", "zodworker:cancel", "zodworker:limits")

Listen = Callable[..., AbstractAsyncContextManager[AsyncIterator[tuple[str, str]]]]
"""``listen(channels, verify=bool)``."""

_decode = msgspec.json.Decoder(dict[str, Any]).decode


class Listener:
    """Keeps one LISTEN connection and turns notifications into calls."""

    def __init__(
        self,
        *,
        listen: Listen,
        on_jobs: Callable[[], None],
        on_breaking: Callable[[Any], None],
        on_cancel: Callable[[int], object],
        on_limits: Callable[[], None],
        emit: Callable[..., None],
        wants: Callable[[str], bool],
        logger: logging.Logger,
    ) -> None:
        self._listen = listen
        self._on_jobs = on_jobs
        self._on_breaking = on_breaking
        self._on_cancel = on_cancel
        self._on_limits = on_limits
        self._emit = emit
        self._wants = wants
        self._logger = logger

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Listen until cancelled (reconnecting as needed)."""
        attempts = 0
        first = True
        while True:
            self._emit("pool:listen:connecting", attempts=attempts)
            try:
                async with self._listen(CHANNELS, verify=first) as notifications:
                    attempts = 0
                    if first:
                        first = False
                        task_status.started()
                    self._emit("pool:listen:success")
                    self._on_jobs()  # catch up on anything added while we were not listening
                    try:
                        async for channel, payload in notifications:
                            self._notified(channel, payload)
                    finally:
                        self._emit("pool:listen:release")
            except ConfigError:
                raise  # LISTEN cannot work here: the pool must not start as if it did
            except Exception as exc:
                if first:
                    first = False
                    task_status.started()  # start without it; keep trying in the background
                attempts += 1
                self._emit("pool:listen:error", error=exc, attempts=attempts)
                delay = min(60.0, 0.5 * 2 ** min(attempts, 7)) * (0.5 + random.random() / 2)
                self._logger.warning(
                    "LISTEN connection lost (%s); reconnecting in %.1fs", exc, delay
                )
                await asyncio.sleep(delay)

    def _notified(self, channel: str, payload: str) -> None:
        if channel == "zodworker:cancel":
            if payload.isdigit():
                self._on_cancel(int(payload))
            return
        if channel == "zodworker:limits":
            self._on_limits()
            return
        try:
            data = _decode(payload) if payload else {}
        except msgspec.DecodeError:
            data = {}
        if self._wants("pool:listen:notification"):
            self._emit("pool:listen:notification", channel=channel, payload=data)
        if channel == "jobs:insert":
            count = data.get("count", 1)
            if not isinstance(count, (int, float)) or count > 0:
                self._on_jobs()
        elif channel == "worker:migrate" and data.get("breaking"):
            self._on_breaking(data.get("migrationNumber"))
