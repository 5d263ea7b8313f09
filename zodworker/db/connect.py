"""Connections: one pool per process, plus the two connections kept apart on purpose.

:class:`Database` is a process's handle on its PostgreSQL: the connection string, the schema,
and **one** connection pool shared by everything the process does (enqueueing, the worker
pool's fetches and results, cron, maintenance, task helpers). Two connections stay outside
it deliberately:

* the LISTEN connection (:meth:`Database.listen`): it holds session state (``LISTEN``) and
  waits forever, so it must not be a pooled connection;
* the heartbeat connection (:meth:`Database.heartbeat_connection`): liveness must not wait
  behind handlers that hold every pooled connection, or a busy pool would look dead.

Every connection zodworker opens carries ``application_name=zodworker:<role>:<pid>``, the
role being ``shared``, ``listen`` or ``heartbeat`` (unless the connection string sets its own
application name), so ``pg_stat_activity`` shows who is who. (In zodworker, "pool" means
the worker pool; psycopg's pool is called the *connections*.)
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, Final

import msgspec
import psycopg
from psycopg import conninfo as pq_conninfo
from psycopg.types.json import set_json_loads
from psycopg_pool import AsyncConnectionPool

from ..config import WorkerOptions
from ..errors import ConfigError, DatabaseError
from ..job import DEFAULT_SCHEMA
from . import sqlfiles
from .rows import AsyncConn, borrow, fetch, fetch_sync, translate_errors

__all__ = [
    "VERIFY_TIMEOUT",
    "Database",
    "DedicatedConnection",
    "Notification",
    "application_name",
    "can_connect",
    "conninfo_from_env",
    "conninfo_from_parts",
    "conninfo_of",
    "ensure_database",
]

Notification = tuple[str, str]
"""A notification: (channel, payload)."""

_OPEN_TIMEOUT: Final = 30.0
VERIFY_TIMEOUT: Final = 2.0
"""Seconds the LISTEN check waits for its notification."""


def conninfo_from_env(given: str | None) -> str | None:
    """``given``, else ``$DATABASE_URL``, else None."""
    return given or os.environ.get("DATABASE_URL") or None


def application_name(conninfo: str, role: str) -> dict[str, str]:
    """Connection keywords tagging a connection with its role, unless the connection string
    names its own application."""
    try:
        if pq_conninfo.conninfo_to_dict(conninfo).get("application_name"):
            return {}
    except psycopg.ProgrammingError:
        return {}
    return {"application_name": f"zodworker:{role}:{os.getpid()}"}


def conninfo_from_parts(**parts: str | None) -> str:
    """A connection string from its parts (``dbname``, ``user``, ``password``, ``host``,
    ``port``...), leaving out those that are None or empty."""
    return pq_conninfo.make_conninfo(**{key: value for key, value in parts.items() if value})


def conninfo_of(pool: AsyncConnectionPool[Any]) -> str:
    """The connection string a psycopg pool was made with (for opening another one)."""
    if isinstance(pool.conninfo, str) and pool.conninfo:
        return pool.conninfo
    raise ConfigError(
        "database_url", "the given pool has no plain conninfo; pass database_url for the worker"
    )


class DedicatedConnection:
    """One connection outside the pool, opened on first use and again after it broke."""

    __slots__ = ("_conn", "_conninfo", "_kwargs")

    def __init__(self, conninfo: str, role: str, *, prepare: bool = True) -> None:
        self._conninfo = conninfo
        self._kwargs: dict[str, Any] = {"autocommit": True, **application_name(conninfo, role)}
        if not prepare:
            self._kwargs["prepare_threshold"] = None
        self._conn: AsyncConn | None = None

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[AsyncConn]:
        """The connection; closed (and reopened next time) when the block fails."""
        with translate_errors():
            if self._conn is None or self._conn.closed:
                self._conn = await psycopg.AsyncConnection.connect(self._conninfo, **self._kwargs)
        try:
            yield self._conn
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Close the connection if it is open."""
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()


class Database:
    """A process's PostgreSQL: connection string, schema and the one shared pool.

    ``await database.open()`` before use and ``await database.close()`` after; the shared
    psycopg pool is then ``database.connections``. Its connections are in autocommit mode
    (each statement is its own transaction; open one with ``conn.transaction()``), decode
    JSON with msgspec, and use server-side prepared statements unless
    ``prepared_statements=False`` (for PgBouncer in transaction mode).
    """

    def __init__(
        self,
        conninfo: str,
        *,
        schema: str = DEFAULT_SCHEMA,
        max_size: int = 10,
        prepared_statements: bool = True,
        name: str = "zodworker",
    ) -> None:
        if not isinstance(conninfo, str) or not conninfo:
            raise ConfigError("connection", "must be a PostgreSQL URL or connection string")
        self.conninfo = conninfo
        self.schema = schema
        self.prepared_statements = prepared_statements

        async def configure(conn: AsyncConn) -> None:
            set_json_loads(msgspec.json.decode, conn)
            conn.prepare_threshold = 0 if prepared_statements else None

        self.connections: AsyncConnectionPool[AsyncConn] = AsyncConnectionPool(
            conninfo,
            min_size=1,
            max_size=max_size,
            kwargs={"autocommit": True, **application_name(conninfo, "shared")},
            configure=configure,
            open=False,
            name=name,
        )
        self._opened = False

    @classmethod
    def for_options(cls, options: WorkerOptions) -> Database:
        """The database a worker pool started on its own uses: ``options.connection``, else
        ``DATABASE_URL`` (the embedded server is the face's fallback, not this layer's)."""
        conninfo = conninfo_from_env(options.connection)
        if conninfo is None:
            raise ConfigError(
                "connection",
                "no database given: pass connection=<url>, set DATABASE_URL, or start the "
                "pool with zodworker.run(), which falls back to the embedded PostgreSQL",
            )
        return cls(
            conninfo,
            schema=options.schema,
            max_size=options.max_pool_size,
            prepared_statements=options.use_prepared_statements,
            name=options.pool_id,
        )

    async def open(self, timeout: float = _OPEN_TIMEOUT) -> None:  # noqa: ASYNC109
        """Open the pool and wait until its first connection works."""
        with translate_errors():
            await self.connections.open(wait=True, timeout=timeout)
        self._opened = True

    async def close(self) -> None:
        """Close the pool (idempotent)."""
        if self._opened:
            self._opened = False
            await self.connections.close()

    def query(self, name: str) -> bytes:
        """The named query of ``sql/queries`` for this schema."""
        return sqlfiles.query(name, self.schema)

    def heartbeat_connection(self) -> DedicatedConnection:
        """A connection of its own for liveness updates (see the module docs)."""
        return DedicatedConnection(self.conninfo, "heartbeat", prepare=self.prepared_statements)

    @asynccontextmanager
    async def listen(
        self, channels: Sequence[str], conninfo: str | None = None, *, verify: bool = False
    ) -> AsyncIterator[AsyncIterator[Notification]]:
        """A new connection (to ``conninfo``, default the database's) LISTENing on
        ``channels``; yields its notifications until the connection breaks (raising
        :class:`~zodworker.errors.DatabaseError`).

        ``verify``: first send a notification on a private channel from the shared pool and
        check that it arrives within :data:`VERIFY_TIMEOUT`; if it does not (a pooler in
        transaction mode between us and the server), raise
        :class:`~zodworker.errors.ConfigError` naming the settings to change.
        """
        listener = DedicatedConnection(conninfo or self.conninfo, "listen", prepare=False)
        try:
            async with listener.connection() as conn:
                statements = [sqlfiles.server_query("listen", CHANNEL=c) for c in channels]
                await fetch(conn, b" ".join(statements), prepare=False)  # one round trip
                early = await self._verify(conn) if verify else []
                yield _notifications(conn, early)
        finally:
            await listener.close()

    async def _verify(self, conn: AsyncConn) -> list[Notification]:
        """Check that a notification reaches ``conn``; return the others that came first."""
        probe = f"zodworker_probe_{secrets.token_hex(8)}"
        await fetch(conn, sqlfiles.server_query("listen", CHANNEL=probe), prepare=False)
        await self.notify(probe, "probe")
        early: list[Notification] = []
        arrived = False
        with translate_errors():
            async for note in conn.notifies(timeout=VERIFY_TIMEOUT):
                if note.channel == probe:
                    arrived = True
                    break  # the generator holds the connection: leave it before UNLISTEN
                early.append((note.channel, note.payload))
        if arrived:
            await fetch(conn, sqlfiles.server_query("unlisten", CHANNEL=probe), prepare=False)
            return early
        prepared = (
            "; prepared statements do not survive there either: also pass "
            "use_prepared_statements=False (--no-prepared-statements)"
            if self.prepared_statements
            else ""
        )
        raise ConfigError(
            "listen_connection",
            f"a notification sent through the pool did not arrive on the LISTEN connection "
            f"within {VERIFY_TIMEOUT:.0f}s: something between zodworker and PostgreSQL does "
            "not keep sessions (PgBouncer in transaction pooling mode?), so LISTEN cannot wake "
            "the worker. Pass a direct or session-pooled URL as listen_connection "
            f"(zodworker run --listen-connection URL), or poll_only=True (--poll-only){prepared}",
        )

    async def ping(self) -> None:
        """``select 1`` on a pooled connection (raises DatabaseError when it cannot)."""
        with translate_errors():
            async with borrow(self.connections) as conn:
                await fetch(conn, sqlfiles.server_query("ping"), prepare=False)

    async def notify(self, channel: str, payload: str) -> None:
        """Send a notification on ``channel`` from the shared pool."""
        async with borrow(self.connections) as conn:
            await fetch(conn, sqlfiles.server_query("notify"), (channel, payload), prepare=False)


async def _notifications(conn: AsyncConn, early: list[Notification]) -> AsyncIterator[Notification]:
    for note in early:
        yield note
    with translate_errors():
        async for received in conn.notifies():
            yield received.channel, received.payload


def can_connect(conninfo: str, timeout: int = 5) -> bool:
    """Whether a server answers ``select 1`` at ``conninfo`` within ``timeout`` seconds."""
    try:
        with psycopg.connect(conninfo, connect_timeout=timeout, autocommit=True) as conn:
            fetch_sync(conn, sqlfiles.server_query("ping"))
    except (psycopg.Error, DatabaseError, OSError):
        return False
    return True


def ensure_database(conninfo: str, database: str, timeout: int = 5) -> None:
    """Create ``database`` on the server at ``conninfo`` (a maintenance database) unless it
    exists; creating it concurrently with another process is fine."""
    with (
        translate_errors(),
        psycopg.connect(conninfo, connect_timeout=timeout, autocommit=True) as conn,
    ):
        if fetch_sync(conn, sqlfiles.server_query("database_exists"), (database,)):
            return
        try:
            fetch_sync(conn, sqlfiles.server_query("create_database", DATABASE=database))
        except DatabaseError as exc:
            if exc.sqlstate != "42P04":  # created by someone else meanwhile
                raise
