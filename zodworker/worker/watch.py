"""Watching a task directory: reload it whenever one of its ``.py`` files changes.

For development (``zodworker run --watch``): the directory is polled (modification times,
sizes and inodes of every ``.py`` file) without any third-party watcher, and reloaded whole
with :func:`~zodworker.worker.tasks.load_task_directory` on a change.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeAlias

import anyio
import anyio.to_thread
from anyio.abc import TaskStatus

from ..errors import ConfigError, TaskLoadError
from .tasks import Handler, load_task_directory

__all__ = ["TaskDirectoryWatcher"]


class TaskDirectoryWatcher:
    """Keep a task directory loaded, reloading it whenever one of its ``.py`` files changes.

    The directory is loaded in the constructor (a :class:`TaskLoadError` there propagates, so a
    broken directory fails at startup). :meth:`run` then polls the modification times, sizes
    and inodes of every ``.py`` file under ``path`` (outside ``.``-folders) every ``interval``
    seconds, without any third-party watcher. On a change it reloads the *whole* directory
    with :func:`load_task_directory` and calls ``on_change(new_tasks)``. If reloading fails it
    logs the error (naming the file) and keeps the previous tasks; ``on_change`` is not called,
    and the next edit is picked up as usual.

    ``on_change`` is called from the thread (and event loop) running :meth:`run`, never
    concurrently with itself; an exception it raises is logged and watching continues.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        on_change: Callable[[dict[str, Handler]], None],
        *,
        interval: float = 0.5,
        logger: logging.Logger | None = None,
    ) -> None:
        """Load ``path`` now; see the class docstring for what :meth:`run` does later.

        Raises:
            TaskLoadError: the directory cannot be loaded.
            ConfigError: ``interval`` is not positive.
        """
        if not (isinstance(interval, (int, float)) and interval > 0):
            raise ConfigError("interval", f"must be a positive number of seconds, not {interval!r}")
        self._path = Path(path)
        self._on_change = on_change
        self._interval = interval
        self._logger = logger if logger is not None else logging.getLogger(__name__)
        # Fingerprint first: an edit made while loading is then seen by the first poll.
        self._fingerprint = _fingerprint(self._path)
        self._tasks = load_task_directory(self._path)

    def snapshot(self) -> dict[str, Handler]:
        """Return (a copy of) the tasks currently loaded."""
        return dict(self._tasks)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Poll for changes and reload until cancelled. Never returns normally.

        Scanning and loading run in a worker thread so the event loop stays responsive;
        ``on_change`` runs back on the event loop.
        """
        task_status.started()
        while True:
            await anyio.sleep(self._interval)
            fingerprint = await anyio.to_thread.run_sync(_fingerprint, self._path)
            if fingerprint == self._fingerprint:
                continue
            # Remember this state even if loading fails, so a broken file is reported once.
            self._fingerprint = fingerprint
            try:
                tasks = await anyio.to_thread.run_sync(load_task_directory, self._path)
            except TaskLoadError as exc:
                self._logger.error(
                    "reloading tasks from %s failed, keeping the %d tasks loaded before: %s",
                    self._path,
                    len(self._tasks),
                    exc,
                    exc_info=exc,
                )
                continue
            self._tasks = tasks
            self._logger.info("reloaded %d tasks from %s", len(tasks), self._path)
            try:
                self._on_change(dict(tasks))
            except Exception:
                self._logger.exception("the task reload callback %r failed", self._on_change)


_Fingerprint: TypeAlias = dict[str, tuple[int, int, int, int]] | None


def _fingerprint(root: Path) -> _Fingerprint:
    """Stat every ``.py`` file under ``root`` (outside ``.``-folders and ``__pycache__``).

    Returns ``None`` when ``root`` itself cannot be read, which differs from every readable
    state, so the following reload reports the problem.
    """
    result: dict[str, tuple[int, int, int, int]] = {}
    try:
        info = root.stat()
    except OSError:
        return None
    seen = {(info.st_dev, info.st_ino)}
    pending = [root]
    while pending:
        directory = pending.pop()
        try:
            with os.scandir(directory) as entries:
                for entry in entries:
                    try:
                        if entry.is_dir():
                            if entry.name.startswith(".") or entry.name == "__pycache__":
                                continue
                            info = entry.stat()
                            if (info.st_dev, info.st_ino) not in seen:  # not a symlink loop
                                seen.add((info.st_dev, info.st_ino))
                                pending.append(Path(entry.path))
                        elif entry.name.endswith(".py"):
                            info = entry.stat()
                            result[entry.path] = (
                                info.st_mtime_ns,
                                info.st_size,
                                info.st_ino,
                                info.st_ctime_ns,
                            )
                    except OSError:  # vanished or unreadable: absent from this state
                        continue
        except OSError:
            if directory == root:
                return None
    return result
