"""Crontab files on disk: reading one, and noticing when it changes.

:func:`read_crontab` reads and parses a file. :class:`CrontabWatcher` polls the file's
modification time and size and hands every new, valid version's items to a callback; a
broken edit is logged and the previous items stay in use. Which file to read (``--crontab``,
``./crontab``) is the command line's business.

To notice an edit made between reading the items in use and starting to watch, take the
stamp before reading: construct the watcher first (it stamps the file), or pass the stamp
taken before reading as ``seen``.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Final, TypeAlias

import anyio
import anyio.abc

from ..errors import ConfigError, CrontabError, ZodworkerError
from .crontab import parse_crontab
from .item import CronItem

__all__ = ["CrontabWatcher", "Stamp", "file_stamp", "read_crontab"]

Stamp: TypeAlias = tuple[int, int] | None
"""A file's (modification time in ns, size); ``None`` when it cannot be looked at."""


class _Now(enum.Enum):
    NOW = enum.auto()


_NOW: Final = _Now.NOW


def read_crontab(path: Path | None) -> list[CronItem]:
    """The items of the crontab at ``path`` (none for ``None``).

    Raises :class:`~zodworker.errors.ConfigError` (field ``crontab``) when the file cannot be
    read, :class:`~zodworker.errors.CrontabError` when it is invalid.
    """
    if path is None:
        return []
    try:
        text = path.read_text("utf-8")
    except OSError as exc:
        raise ConfigError("crontab", f"{path}: cannot read it ({exc.strerror})") from None
    try:
        return parse_crontab(text)
    except CrontabError as exc:
        raise exc.located(str(path)) from None


def file_stamp(path: Path | None) -> Stamp:
    """The (modification time in ns, size) of ``path``; None when it cannot be looked at."""
    try:
        stat = path.stat() if path is not None else None
    except OSError:
        return None
    return None if stat is None else (stat.st_mtime_ns, stat.st_size)


class CrontabWatcher:
    """Reloads the crontab at ``path`` when it changes: ``on_change`` gets the new items.

    ``seen`` is the file's stamp taken before the items in use were read; by default the
    stamp at construction. Run it in a task group (``await tg.start(watcher.run)``); it polls
    every ``interval`` seconds until cancelled.
    """

    def __init__(
        self,
        path: Path,
        on_change: Callable[[list[CronItem]], None],
        *,
        interval: float = 0.5,
        logger: logging.Logger | None = None,
        seen: Stamp | _Now = _NOW,
    ) -> None:
        self.path = path
        self.interval = interval
        self._on_change = on_change
        self._logger = logger or logging.getLogger("zodworker.cron")
        self._seen: Stamp = self.stamp() if seen is _NOW else seen

    def stamp(self) -> Stamp:
        """The file's stamp now (``None`` if it cannot be looked at)."""
        return file_stamp(self.path)

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Watch until cancelled; ``task_status.started()`` once watching."""
        task_status.started()
        while True:
            await anyio.sleep(self.interval)
            now = self.stamp()
            if now == self._seen:
                continue
            self._seen = now
            try:
                items = read_crontab(self.path)
            except ZodworkerError as exc:
                self._logger.error("crontab not reloaded, keeping the previous items: %s", exc)
                continue
            self._on_change(items)
            self._logger.info("reloaded %d cron items from %s", len(items), self.path)
