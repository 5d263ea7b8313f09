"""The caller's transaction, whatever holds it: a psycopg connection, an SQLAlchemy
connection or session running on psycopg 3, or a Django connection (sync).

``client.enqueue(..., tx=...)`` adds the job in the caller's transaction. With SQLAlchemy
that transaction lives on the psycopg connection under the session (``postgresql+psycopg``
URLs, sync or async engines): :func:`async_connection` and :func:`sync_connection` find it
(asking the session for its connection begins its transaction if none is open), so the job
commits or rolls back with everything else the session does. A Django connection
(``django.db.connection``, ``connections["other"]``) gives the psycopg connection of its
postgresql backend, in the transaction ``transaction.atomic()`` has open. SQLAlchemy is
imported only when such an object is given.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeAlias

import psycopg

from ..errors import ConfigError
from .rows import AsyncConn, AsyncTarget, SyncConn, borrow, translate_errors

if TYPE_CHECKING:
    from django.db.backends.base.base import BaseDatabaseWrapper as DjangoConnection
    from sqlalchemy import Connection as SAConnection
    from sqlalchemy.ext.asyncio import AsyncConnection as SAAsyncConnection
    from sqlalchemy.ext.asyncio import AsyncSession
    from sqlalchemy.orm import Session


__all__ = ["AsyncTx", "SyncTx", "async_connection", "sync_connection", "transaction"]

AsyncTx: TypeAlias = "psycopg.AsyncConnection[Any] | AsyncSession | SAAsyncConnection"
"""What ``tx=`` of an async enqueue takes."""
SyncTx: TypeAlias = "psycopg.Connection[Any] | Session | SAConnection | DjangoConnection"
"""What ``tx=`` of a sync enqueue takes."""


def _from_sqlalchemy(tx: object) -> bool:
    return type(tx).__module__.startswith("sqlalchemy.")


def _driver(raw: Any, kind: type[Any], tx: object) -> Any:
    driver = getattr(raw, "driver_connection", None)
    if not isinstance(driver, kind):
        raise ConfigError(
            "tx",
            f"the SQLAlchemy {type(tx).__name__} does not run on psycopg 3 "
            f"({type(driver).__name__}); use a postgresql+psycopg:// engine URL",
        )
    return driver


async def async_connection(tx: AsyncTx) -> AsyncConn:
    """The psycopg ``AsyncConnection`` holding ``tx``'s transaction."""
    if isinstance(tx, psycopg.AsyncConnection):
        return tx
    if _from_sqlalchemy(tx):
        from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

        if isinstance(tx, AsyncSession):
            tx = await tx.connection()
        if isinstance(tx, AsyncConnection):
            raw = await tx.get_raw_connection()
            driver: AsyncConn = _driver(raw, psycopg.AsyncConnection, tx)
            return driver
    raise ConfigError(
        "tx",
        f"got {type(tx).__name__}; pass a psycopg AsyncConnection, or an SQLAlchemy "
        "AsyncSession / AsyncConnection on psycopg 3 (a sync one goes to enqueue_sync)",
    )


def sync_connection(tx: SyncTx) -> SyncConn:
    """The psycopg ``Connection`` holding ``tx``'s transaction."""
    if isinstance(tx, psycopg.Connection):
        return tx
    if type(tx).__module__.startswith("django."):  # a connection, or django.db.connection
        tx.ensure_connection()  # type: ignore[union-attr]
        raw = tx.connection
        if not isinstance(raw, psycopg.Connection):
            raise ConfigError(
                "tx",
                f"the Django connection does not run on psycopg 3 ({type(raw).__name__}); "
                "use the django.db.backends.postgresql backend with psycopg installed",
            )
        return raw
    if _from_sqlalchemy(tx):
        from sqlalchemy import Connection
        from sqlalchemy.orm import Session

        if isinstance(tx, Session):
            tx = tx.connection()
        if isinstance(tx, Connection):
            driver: SyncConn = _driver(tx.connection, psycopg.Connection, tx)
            return driver
    raise ConfigError(
        "tx",
        f"got {type(tx).__name__}; pass a psycopg Connection, an SQLAlchemy Session / "
        "Connection on psycopg 3 (an async one goes to enqueue), or a Django connection",
    )


@asynccontextmanager
async def transaction(target: AsyncTarget) -> AsyncIterator[AsyncConn]:
    """A connection of ``target`` (a pool: one borrowed from it) inside a transaction that
    commits when the block ends and rolls back when it raises."""
    async with borrow(target) as conn:
        with translate_errors():
            async with conn.transaction():
                yield conn
