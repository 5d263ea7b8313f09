"""What a task handler gets besides its payload: the job, a logger, database access, and an
abort signal.

Async handlers call the helpers directly. Plain (sync) handlers run in a worker thread; they
can check ``helpers.abort_signal.aborted`` / ``wait_sync()`` and reach the async helpers with
``anyio.from_thread.run(helpers.add_job, "task", {...})``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import psycopg
from psycopg_pool import AsyncConnectionPool

from .job import Job, JobSpec
from .store import Store

__all__ = ["AbortSignal", "JobHelpers"]

T = TypeVar("T")


class AbortSignal:
    """Set when the handler should stop early: graceful shutdown passed its abort timeout,
    a forceful shutdown began, or the task's timeout expired. Works from async code and
    from worker threads."""

    __slots__ = ("_async", "_thread", "reason")

    def __init__(self) -> None:
        self._thread = threading.Event()
        self._async: asyncio.Event | None = None
        self.reason: str | None = None

    @property
    def aborted(self) -> bool:
        """Whether the signal has been given."""
        return self._thread.is_set()

    def _set(self, reason: str) -> None:
        if self._thread.is_set():
            return
        self.reason = reason
        self._thread.set()
        if self._async is not None:
            self._async.set()

    async def wait(self) -> None:
        """Return once the signal is given (from async handlers)."""
        if self._async is None:
            self._async = asyncio.Event()
            if self._thread.is_set():
                self._async.set()
        await self._async.wait()

    def wait_sync(self, timeout: float | None = None) -> bool:
        """Block until the signal is given or ``timeout`` passes (from sync handlers)."""
        return self._thread.wait(timeout)


class JobHelpers:
    """Passed to every handler as its second argument."""

    __slots__ = ("_pool", "_store", "abort_signal", "job", "logger")

    def __init__(
        self,
        job: Job,
        logger: logging.LoggerAdapter[logging.Logger],
        pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]],
        store: Store,
    ) -> None:
        self.job = job
        """The job being run (attempts already counts this run)."""
        self.logger = logger
        """A logger whose records carry the job's id and task identifier."""
        self.abort_signal = AbortSignal()
        self._pool = pool
        self._store = store

    async def add_job(self, identifier: str, payload: Any = None, **options: Any) -> Job:
        """Add a job (same options as :meth:`zodworker.Store.add_job`), committed at once."""
        return await self._store.add_job(self._pool, identifier, payload, **options)

    async def add_jobs(self, specs: Sequence[JobSpec], **options: Any) -> list[Job]:
        """Add many jobs in one statement."""
        return await self._store.add_jobs(self._pool, specs, **options)

    async def with_pg_client(
        self, callback: Callable[[psycopg.AsyncConnection[Any]], Awaitable[T]]
    ) -> T:
        """Run ``callback`` with a pooled connection (autocommit; open a transaction with
        ``conn.transaction()`` when you need one)."""
        async with self._pool.connection() as conn:
            return await callback(conn)

    async def query(self, query: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
        """Run one statement on a pooled connection and return its rows (if any)."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(query.encode(), params)
            return await cur.fetchall() if cur.description else []
