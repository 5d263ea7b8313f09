"""Wake-ups from PostgreSQL: LISTEN on ``jobs:insert`` and ``worker:migrate``, reconnecting.

The listener is handed ``listen(channels)`` (a dedicated connection's notifications, from the
database layer) and two plain functions: ``on_jobs()`` when jobs were added (the local queue
fetches), and ``on_breaking(revision)`` when a breaking migration was applied (the pool shuts
down and exits 57, as graphile-worker does). After every (re)connection it calls
``on_jobs()`` once, to catch up on anything added while nobody listened. A lost connection is
retried with jittered exponential backoff capped at 60 s; polling covers the gap.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Final

import anyio
import msgspec
from anyio.abc import TaskStatus

__all__ = ["CHANNELS", "Listener"]

CHANNELS: Final = ("jobs:insert", "worker:migrate")

Listen = Callable[[Sequence[str]], AbstractAsyncContextManager[AsyncIterator[tuple[str, str]]]]

_decode = msgspec.json.Decoder(dict[str, Any]).decode


class Listener:
    """Keeps one LISTEN connection and turns notifications into calls."""

    def __init__(
        self,
        *,
        listen: Listen,
        on_jobs: Callable[[], None],
        on_breaking: Callable[[Any], None],
        emit: Callable[..., None],
        wants: Callable[[str], bool],
        logger: logging.Logger,
    ) -> None:
        self._listen = listen
        self._on_jobs = on_jobs
        self._on_breaking = on_breaking
        self._emit = emit
        self._wants = wants
        self._logger = logger

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Listen until cancelled (reconnecting as needed)."""
        task_status.started()
        attempts = 0
        while True:
            self._emit("pool:listen:connecting", attempts=attempts)
            try:
                async with self._listen(CHANNELS) as notifications:
                    attempts = 0
                    self._emit("pool:listen:success")
                    self._on_jobs()  # catch up on anything added while we were not listening
                    try:
                        async for channel, payload in notifications:
                            self._notified(channel, payload)
                    finally:
                        self._emit("pool:listen:release")
            except Exception as exc:
                attempts += 1
                self._emit("pool:listen:error", error=exc, attempts=attempts)
                delay = min(60.0, 0.5 * 2 ** min(attempts, 7)) * (0.5 + random.random() / 2)
                self._logger.warning(
                    "LISTEN connection lost (%s); reconnecting in %.1fs", exc, delay
                )
                await asyncio.sleep(delay)

    def _notified(self, channel: str, payload: str) -> None:
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
