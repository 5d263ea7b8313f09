"""Where task handlers come from: a mapping, or a directory of modules, optionally watched.

A *task* is a job's identifier and the handler that runs it. A *handler* (:data:`Handler`) is
a callable ``handler(payload, helpers)``. It may be an ``async def`` function (the pool awaits
it on the event loop) or a plain function (the pool calls it in a worker thread). This module
only finds, checks and loads handlers; running them is the executor's job.

Three ways to provide them:

* :func:`validate_task_list` checks a mapping you built yourself, ``{"send_email": fn}``.
* :func:`load_task_directory` loads one module per task from a directory, as graphile-worker's
  ``tasks/`` folder does: ``tasks/send_email.py`` becomes ``"send_email"`` and
  ``tasks/billing/charge.py`` becomes ``"billing/charge"``. Each module must define a callable
  named ``task``::

      # tasks/send_email.py
      async def task(payload, helpers):
          ...

  Files and folders whose names start with ``_`` or ``.`` are skipped (so ``__init__.py``,
  ``__pycache__``, ``_helpers.py`` and ``.git`` are never loaded as tasks), and so is every
  file not ending in ``.py``.
* :class:`~zodworker.worker.watch.TaskDirectoryWatcher` loads a directory, then reloads all
  of it whenever a ``.py`` file under it is added, changed or removed, for development.

A :class:`Task` pairs a handler with per-task settings (a timeout); :func:`compile_tasks`
turns a task list into what the executor runs.

Task modules are imported under stable synthetic names, ``zodworker_tasks.d<hash>.<dotted
path>`` where ``<hash>`` identifies the directory (see :func:`load_task_directory`). The task
directory is *not* added to ``sys.path``; a task module that needs shared code imports it from
an installed package (or a path it adds itself).
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import inspect
import linecache
import os
import sys
import threading
import types
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeAlias

from ..errors import ConfigError, TaskLoadError
from ..job import MAX_IDENTIFIER_LENGTH

__all__ = [
    "MODULE_PREFIX",
    "Handler",
    "Runnable",
    "Task",
    "compile_tasks",
    "load_task_directory",
    "validate_task_list",
]

Handler: TypeAlias = Callable[[Any, Any], Any]
"""A task handler: ``handler(payload, helpers)``.

``payload`` is the job's decoded JSON payload and ``helpers`` the job's
:class:`~zodworker.worker.helpers.JobHelpers` (job details, a logger, ``add_job``...). An
``async def`` handler is awaited on the event loop; a plain function is called in a worker
thread. Returning normally marks the job done; raising fails the attempt (it is retried
later, until ``max_attempts``).
"""

MODULE_PREFIX: Final = "zodworker_tasks"
"""Task modules loaded from a directory live under this name in ``sys.modules``."""
_TASK_ATTRIBUTE: Final = "task"

# Loading mutates sys.modules in several steps; one load at a time keeps two watchers (or a
# watcher and a direct call) on the same directory from interleaving those steps.
_load_lock = threading.Lock()


@dataclass(frozen=True, slots=True)
class Task:
    """A handler with per-task settings. A task list may map identifiers to a plain handler
    or to a :class:`Task`."""

    handler: Handler
    timeout: float | None = None
    """Seconds; when exceeded the handler is cancelled (async) or abandoned (sync, it gets
    its abort signal) and the job fails with a timeout error, so it retries."""
    record: bool = False
    """Keep its result: when a job of it finishes for good, write a history row (outcome,
    attempts, timings, and the handler's return value as JSON) and tell result waiters."""


@dataclass(frozen=True, slots=True)
class Runnable:
    """A task as the executor runs it: the handler, its timeout, how to call it, and
    whether its results are kept."""

    handler: Handler
    timeout: float | None
    is_async: bool
    record: bool = False


def compile_tasks(
    tasks: Mapping[str, Handler | Task], *, record_all: bool = False
) -> dict[str, Runnable]:
    """Check a task list (see :func:`validate_task_list`) and prepare it for running;
    ``record_all`` keeps the results of every task."""
    plain = {name: (t.handler if isinstance(t, Task) else t) for name, t in tasks.items()}
    validate_task_list(plain)
    compiled = {}
    for name, t in tasks.items():
        timeout = t.timeout if isinstance(t, Task) else None
        if timeout is not None and not (isinstance(timeout, (int, float)) and timeout > 0):
            raise ConfigError(f"tasks[{name!r}].timeout", "must be a positive number of seconds")
        handler = plain[name]
        is_async = inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(
            getattr(handler, "__call__", None)  # noqa: B004  # callable objects
        )
        record = record_all or (isinstance(t, Task) and t.record)
        compiled[name] = Runnable(handler, timeout, is_async, record)
    return compiled


def validate_task_list(tasks: Mapping[str, Handler]) -> dict[str, Handler]:
    """Check a mapping of task identifiers to handlers; return it as a new ``dict``.

    Identifiers must be non-empty strings of at most 128 characters without NUL (the limit of
    the jobs table's ``task_identifier``); handlers must be callable.

    Raises:
        TaskLoadError: naming the offending identifier and what to change.
    """
    checked: dict[str, Handler] = {}
    for identifier, handler in tasks.items():
        if not isinstance(identifier, str):
            raise TaskLoadError(
                f"task identifier {identifier!r} is a {type(identifier).__name__}; "
                "task identifiers must be strings",
                identifier=None,
            )
        if not identifier:
            raise TaskLoadError(
                "task identifier '' is empty; give every task a non-empty name",
                identifier=identifier,
            )
        if len(identifier) > MAX_IDENTIFIER_LENGTH:
            raise TaskLoadError(
                f"task identifier {identifier[:40]!r}... is {len(identifier)} characters long; "
                f"the limit is {MAX_IDENTIFIER_LENGTH}, use a shorter name",
                identifier=identifier,
            )
        if "\x00" in identifier:
            raise TaskLoadError(
                f"task identifier {identifier!r} contains a NUL character, which PostgreSQL "
                "text cannot store; remove it",
                identifier=identifier,
            )
        if not callable(handler):
            raise TaskLoadError(
                f"task {identifier!r}: the handler is a {type(handler).__name__}, not a "
                "callable; map it to a function taking (payload, helpers)",
                identifier=identifier,
            )
        checked[identifier] = handler
    return checked


def load_task_directory(path: str | os.PathLike[str]) -> dict[str, Handler]:
    """Load one task per ``.py`` module under ``path``; return ``{identifier: handler}``.

    The identifier is the module's path relative to ``path``, without ``.py``, with ``/``
    between folders: ``send_email.py`` -> ``"send_email"``, ``billing/charge.py`` ->
    ``"billing/charge"``. The handler is the module's ``task`` attribute, which must be
    callable (``def task(payload, helpers)`` or ``async def task(payload, helpers)``).
    Entries starting with ``_`` or ``.`` and files not ending in ``.py`` are skipped.

    Each call executes every module afresh (new module objects; the source is compiled from
    the file each time and no bytecode cache is read or written), so edited code takes effect
    and module-level state is never shared between two loads. Handlers from an earlier load
    keep working with their own module's globals.

    Module names are stable: ``zodworker_tasks.d<hash>.<parts>`` where ``<hash>`` is derived
    from the resolved directory path and ``<parts>`` are the relative path's components
    (components that are not Python identifiers are hex-escaped as ``_<hex>``). The modules
    are registered in ``sys.modules`` under those names (so ``pickle``, ``dataclasses`` and
    ``typing.get_type_hints`` can find them) and entries for files that disappeared are
    removed. Loading is all or nothing: on failure ``sys.modules`` is restored to what it was.

    Raises:
        TaskLoadError: the directory is missing or unreadable, a module fails to import (the
            original exception is ``__cause__``), a module has no callable ``task``, or an
            identifier is invalid (see :func:`validate_task_list`).
    """
    root = Path(path)
    if not root.is_dir():
        raise TaskLoadError(
            f"task directory {str(root)!r} does not exist or is not a directory; create it, "
            "or pass the directory that holds your task modules",
            path=root,
        )
    try:
        files = sorted(_task_files(root))
    except OSError as exc:
        raise TaskLoadError(
            f"cannot read task directory {str(root)!r}: {exc}; check that it exists and is "
            "readable",
            path=root,
        ) from exc

    prefix = _module_prefix(root)
    with _load_lock:
        saved: dict[str, types.ModuleType | None] = {}
        try:
            tasks: dict[str, Handler] = {}
            for parts, file in files:
                identifier = "/".join(parts)
                name = ".".join([prefix, *(_escape(part) for part in parts)])
                saved.setdefault(name, sys.modules.get(name))
                tasks[identifier] = _load_task(name, file, identifier)
            checked = validate_task_list(tasks)
        except BaseException:
            for name, previous in saved.items():
                if previous is None:
                    sys.modules.pop(name, None)
                else:
                    sys.modules[name] = previous
            raise
        # Forget modules of this directory whose files are gone.
        stale = [
            name for name in sys.modules if name.startswith(prefix + ".") and name not in saved
        ]
        for name in stale:
            del sys.modules[name]
    return checked


class _FreshSourceLoader(importlib.machinery.SourceFileLoader):
    """A source loader that always compiles the file and never touches ``__pycache__``.

    The standard loader trusts a ``.pyc`` whose recorded source mtime (whole seconds) and size
    match, so a same-size edit within one second would load stale code.
    """

    def get_code(self, fullname: str) -> types.CodeType:
        """Compile the module's current source."""
        return self.source_to_code(self.get_data(self.path), self.path)


def _load_task(name: str, file: Path, identifier: str) -> Handler:
    """Execute ``file`` as module ``name`` (left in ``sys.modules``); return its ``task``."""
    location = str(file)
    loader = _FreshSourceLoader(name, location)
    spec = importlib.util.spec_from_file_location(name, location, loader=loader)
    if spec is None:  # pragma: no cover - only for paths without a loader
        raise TaskLoadError(f"cannot import task module {location!r}", path=file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    linecache.checkcache(location)  # tracebacks should show the current source
    try:
        loader.exec_module(module)
    except Exception as exc:
        raise TaskLoadError(
            f"task module {location!r} (task {identifier!r}) failed to import: "
            f"{type(exc).__name__}: {exc}; fix the module, or rename it to start with '_' "
            "if it is not a task",
            path=file,
            identifier=identifier,
        ) from exc
    handler = getattr(module, _TASK_ATTRIBUTE, None)
    if handler is None:
        raise TaskLoadError(
            f"task module {location!r} (task {identifier!r}) does not define `task`; add "
            "`def task(payload, helpers): ...` (or `async def task(...)`), or rename the file "
            "to start with '_' if it is not a task",
            path=file,
            identifier=identifier,
        )
    if not callable(handler):
        raise TaskLoadError(
            f"task module {location!r} (task {identifier!r}) defines `task` as a "
            f"{type(handler).__name__}, not a callable; make it a function taking "
            "(payload, helpers)",
            path=file,
            identifier=identifier,
        )
    handler_: Handler = handler
    return handler_


def _skipped(name: str) -> bool:
    return name.startswith(("_", "."))


def _task_files(root: Path) -> Iterator[tuple[tuple[str, ...], Path]]:
    """Yield ``(relative parts without .py, file)`` for every task module under ``root``."""
    seen: set[tuple[int, int]] = set()

    def walk(directory: Path, parts: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], Path]]:
        info = directory.stat()
        if (info.st_dev, info.st_ino) in seen:  # a symlink loop
            return
        seen.add((info.st_dev, info.st_ino))
        with os.scandir(directory) as entries:
            for entry in sorted(entries, key=lambda e: e.name):
                if _skipped(entry.name):
                    continue
                if entry.is_dir():
                    yield from walk(Path(entry.path), (*parts, entry.name))
                elif entry.name.endswith(".py") and entry.is_file():
                    yield (*parts, entry.name[: -len(".py")]), Path(entry.path)

    yield from walk(root, ())


def _module_prefix(root: Path) -> str:
    digest = hashlib.sha256(os.fsencode(root.resolve())).hexdigest()[:16]
    return f"{MODULE_PREFIX}.d{digest}"


def _escape(part: str) -> str:
    """A module-name component for a path component (task names never start with ``_``)."""
    if part.isidentifier() and part.isascii():
        return part
    return "_" + part.encode("utf-8", "surrogateescape").hex()
