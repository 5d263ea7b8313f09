"""One behaviour suite for both producer stores.

The store tests are written once, in async form, against a *flavour*: ``async`` gives the
real :class:`zodworker.Store` and psycopg ``AsyncConnection``s; ``sync`` gives
:class:`zodworker.SyncStore` and synchronous psycopg ``Connection``s, each call run in a
worker thread behind a thin async facade (what a sync application does, minus the event
loop). Every test therefore runs against both stores, on real PostgreSQL connections.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio.to_thread
import psycopg
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from zodworker import Store, SyncStore


async def _in_thread(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs))


class SyncCursor:
    """The async face of a sync cursor's results."""

    def __init__(self, cursor: psycopg.Cursor[Any]) -> None:
        self._cursor = cursor

    async def fetchone(self) -> Any:
        return await _in_thread(self._cursor.fetchone)

    async def fetchall(self) -> list[Any]:
        return list(await _in_thread(self._cursor.fetchall))


class SyncConnection:
    """An async face over a sync psycopg ``Connection`` (every call in a worker thread)."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.sync = conn
        self.info = conn.info

    async def execute(self, query: Any, params: Any = None) -> SyncCursor:
        return SyncCursor(await _in_thread(self.sync.execute, query, params))

    async def commit(self) -> None:
        await _in_thread(self.sync.commit)

    async def rollback(self) -> None:
        await _in_thread(self.sync.rollback)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        block = self.sync.transaction()
        await _in_thread(block.__enter__)
        try:
            yield
        except BaseException as exc:
            await _in_thread(block.__exit__, type(exc), exc, exc.__traceback__)
            raise
        await _in_thread(block.__exit__, None, None, None)


class SyncPool:
    """A sync psycopg ``ConnectionPool`` and the async face of borrowing from it."""

    def __init__(self, pool: ConnectionPool[Any]) -> None:
        self.sync = pool

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[SyncConnection]:
        block = self.sync.connection()
        conn = await _in_thread(block.__enter__)
        try:
            yield SyncConnection(conn)
        except BaseException as exc:
            await _in_thread(block.__exit__, type(exc), exc, exc.__traceback__)
            raise
        await _in_thread(block.__exit__, None, None, None)


class SyncStoreFacade:
    """:class:`SyncStore` with :class:`Store`'s async signatures (calls run in a thread)."""

    def __init__(self, store: SyncStore) -> None:
        self.sync = store

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self.sync, name)

        async def call(target: Any, *args: Any, **kwargs: Any) -> Any:
            return await _in_thread(method, getattr(target, "sync", target), *args, **kwargs)

        return call


@dataclass(frozen=True)
class Flavour:
    """How one store is used: the store, and how to get connections and pools for it."""

    name: str
    store: Any

    def connect(self, url: str, **kwargs: Any) -> AbstractAsyncContextManager[Any]:
        """A connection of this flavour (``async with flavour.connect(url) as conn``)."""
        return _async_connect(url, kwargs) if self.name == "async" else _sync_connect(url, kwargs)

    def pool(self, url: str, **kwargs: Any) -> AbstractAsyncContextManager[Any]:
        """An open pool of this flavour."""
        return _async_pool(url, kwargs) if self.name == "async" else _sync_pool(url, kwargs)


@asynccontextmanager
async def _async_connect(url: str, kwargs: dict[str, Any]) -> AsyncIterator[Any]:
    async with await psycopg.AsyncConnection.connect(url, **kwargs) as conn:
        yield conn


@asynccontextmanager
async def _sync_connect(url: str, kwargs: dict[str, Any]) -> AsyncIterator[Any]:
    conn = await _in_thread(psycopg.connect, url, **kwargs)
    try:
        yield SyncConnection(conn)
    finally:
        await _in_thread(conn.close)


@asynccontextmanager
async def _async_pool(url: str, kwargs: dict[str, Any]) -> AsyncIterator[Any]:
    async with AsyncConnectionPool(url, open=False, **kwargs) as pool:
        yield pool


@asynccontextmanager
async def _sync_pool(url: str, kwargs: dict[str, Any]) -> AsyncIterator[Any]:
    pool: ConnectionPool[Any] = ConnectionPool(url, open=False, **kwargs)
    await _in_thread(pool.open, wait=True)
    try:
        yield SyncPool(pool)
    finally:
        await _in_thread(pool.close)


FLAVOURS = {
    "async": Flavour("async", Store()),
    "sync": Flavour("sync", SyncStoreFacade(SyncStore())),
}
