"""What a task handler gets besides its payload: the job, a logger, database access, and an
abort signal.

Async handlers call the helpers directly. Plain (sync) handlers run in a worker thread; they
can check ``helpers.abort_signal.aborted`` / ``wait_sync()`` and reach the async helpers with
``helpers.call(helpers.add_job, "task", {...})``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from ..db.rows import borrow, fetch
from ..db.store import Store
from ..errors import UsageError
from ..job import Job, JobSpec

if TYPE_CHECKING:
    import psycopg
    from psycopg_pool import AsyncConnectionPool

__all__ = ["AbortSignal", "JobHelpers"]

T = TypeVar("T")


class AbortSignal:
    """Set when the handler should stop early: graceful shutdown passed its abort timeout,
    a forceful shutdown began, or the task's timeout expired. Works from async code and
    from worker threads."""

    __slots__ = ("_async", "_set_flag", "_thread", "reason")

    def __init__(self, *, threads: bool = False) -> None:
        self._set_flag = False
        # Created up front only for handlers that run in threads (wait_sync); async waiters
        # get theirs on first wait(). Keeps the per-job cost near zero.
        self._thread: threading.Event | None = threading.Event() if threads else None
        self._async: asyncio.Event | None = None
        self.reason: str | None = None

    @property
    def aborted(self) -> bool:
        """Whether the signal has been given."""
        return self._set_flag

    def trigger(self, reason: str) -> None:
        """Give the signal with ``reason`` (the worker pool does this; handlers only watch
        it). Giving it again does nothing."""
        if self._set_flag:
            return
        self._set_flag = True
        self.reason = reason
        if self._thread is not None:
            self._thread.set()
        if self._async is not None:
            self._async.set()

    async def wait(self) -> None:
        """Return once the signal is given (from async handlers)."""
        if self._async is None:
            self._async = asyncio.Event()
            if self._set_flag:
                self._async.set()
        await self._async.wait()

    def wait_sync(self, timeout: float | None = None) -> bool:
        """Block until the signal is given or ``timeout`` passes (from sync handlers)."""
        if self._thread is None:
            raise UsageError(
                "wait_sync() is for handlers that run in threads (plain functions); "
                "async handlers use `await helpers.abort_signal.wait()`"
            )
        return self._thread.wait(timeout)


class JobHelpers:
    """Passed to every handler as its second argument."""

    __slots__ = (
        "_base_logger",
        "_connections",
        "_logger",
        "_loop",
        "_store",
        "abort_signal",
        "job",
    )

    def __init__(
        self,
        job: Job,
        logger: logging.Logger,
        connections: AsyncConnectionPool[psycopg.AsyncConnection[Any]],
        store: Store,
        *,
        threads: bool = False,
    ) -> None:
        self.job = job
        """The job being run (attempts already counts this run)."""
        self.abort_signal = AbortSignal(threads=threads)
        self._base_logger = logger
        self._logger: logging.LoggerAdapter[logging.Logger] | None = None
        self._connections = connections
        self._store = store
        self._loop = asyncio.get_running_loop() if threads else None

    def call(self, fn: Callable[..., Coroutine[Any, Any, T]], *args: Any, **kwargs: Any) -> T:
        """From a sync handler's thread: run an async helper on the worker's event loop and
        return its result, e.g. ``helpers.call(helpers.add_job, "audit", {"id": 1})``."""
        if self._loop is None:
            raise UsageError("call() is for sync handlers; async handlers await directly")
        return asyncio.run_coroutine_threadsafe(fn(*args, **kwargs), self._loop).result()

    @property
    def logger(self) -> logging.LoggerAdapter[logging.Logger]:
        """A logger whose records carry ``job_id`` and ``task`` (made on first use)."""
        if self._logger is None:
            self._logger = logging.LoggerAdapter(
                self._base_logger, {"job_id": self.job.id, "task": self.job.task_identifier}
            )
        return self._logger

    async def add_job(self, identifier: str, payload: Any = None, **options: Any) -> Job:
        """Add a job (same options as :meth:`zodworker.Store.add_job`), committed at once."""
        return await self._store.add_job(self._connections, identifier, payload, **options)

    async def add_jobs(self, specs: Sequence[JobSpec], **options: Any) -> Sequence[Job]:
        """Add many jobs in one statement."""
        return await self._store.add_jobs(self._connections, specs, **options)

    async def with_pg_client(
        self, callback: Callable[[psycopg.AsyncConnection[Any]], Awaitable[T]]
    ) -> T:
        """Run ``callback`` with a pooled connection (autocommit; open a transaction with
        ``conn.transaction()`` when you need one)."""
        async with borrow(self._connections) as conn:
            return await callback(conn)

    async def query(self, query: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
        """Run one statement on a pooled connection and return its rows (if any)."""
        async with borrow(self._connections) as conn:
            return await fetch(conn, query.encode(), params)
