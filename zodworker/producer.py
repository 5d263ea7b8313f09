"""The producing half of ``ZodWorker``: enqueue and dequeue (async and sync), and results.

Every enqueue goes through one path: :func:`~zodworker.catalog.build_spec` (look the task up,
validate the payload, overlay the call's options on the task's defaults), then the producer
store on ``tx`` (the caller's open transaction: the job exists only if the caller commits) or
on the client's connection pool. It returns a :class:`~zodworker.results.JobHandle`: the job
as added, and ``await handle.result()`` for tasks that keep results
(:mod:`zodworker.results`). :class:`Producer` holds no SQL; the client
(:class:`~zodworker.client.ZodWorker`) gives it its stores and connections.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, Unpack, overload

from .catalog import EnqueueOptions, TaskCatalog, TaskDef, build_spec, build_specs
from .db.adapt import AsyncTx, SyncTx, async_connection, sync_connection
from .db.store import Store, SyncStore
from .errors import ConfigError
from .job import Job
from .limits import Limit
from .results import JobHandle, Results
from .taskdef import OutputOf
from .tracing import Tracing

if TYPE_CHECKING:
    from psycopg_pool import AsyncConnectionPool

__all__ = ["Handles", "Producer"]

P = TypeVar("P")
O = TypeVar("O")  # noqa: E741


class Handles(Sequence[JobHandle[Any]]):
    """The handles of a batch, each made when first read (a batch of 1,000 need not build
    1,000 objects it may never use)."""

    __slots__ = ("_jobs", "_results")

    def __init__(self, jobs: Sequence[Job], results: Results) -> None:
        self._jobs = jobs
        self._results = results

    def __len__(self) -> int:
        return len(self._jobs)

    @overload
    def __getitem__(self, index: int) -> JobHandle[Any]: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[JobHandle[Any]]: ...
    def __getitem__(self, index: int | slice) -> JobHandle[Any] | Sequence[JobHandle[Any]]:
        if isinstance(index, slice):
            return [JobHandle(job, self._results) for job in self._jobs[index]]
        return JobHandle(self._jobs[index], self._results)

    def __iter__(self) -> Iterator[JobHandle[Any]]:
        results = self._results
        return (JobHandle(job, results) for job in self._jobs)


class Producer:
    """Enqueue, dequeue and results for a catalog (see the module docs)."""

    catalog: TaskCatalog
    _store: Store
    _sync_store: SyncStore
    _tracing: Tracing | None
    _limited: list[Limit]
    _results: Results

    def _require_connections(self) -> AsyncConnectionPool[Any]:
        raise NotImplementedError

    @overload
    async def enqueue(
        self,
        task: Callable[[P, OutputOf[O]], P],
        payload: P,
        *,
        tx: AsyncTx | None = None,
        **options: Unpack[EnqueueOptions],
    ) -> JobHandle[O]: ...
    @overload
    async def enqueue(
        self,
        task: str,
        payload: Any,
        *,
        tx: AsyncTx | None = None,
        **options: Unpack[EnqueueOptions],
    ) -> JobHandle[Any]: ...
    async def enqueue(
        self,
        task: Callable[..., Any] | str,
        payload: Any,
        *,
        tx: AsyncTx | None = None,
        **options: Unpack[EnqueueOptions],
    ) -> JobHandle[Any]:
        """Validate ``payload`` for ``task`` and add the job; return its handle.

        ``task`` is a task of the catalog (typed: mypy checks the payload's type, and names
        the expected model when it does not fit) or its identifier. With ``tx`` (a psycopg
        ``AsyncConnection``, or an SQLAlchemy ``AsyncSession`` / ``AsyncConnection`` on
        psycopg 3) the job is added in that transaction and commits or rolls back with it."""
        spec, mode, limits = build_spec(self.catalog, task, payload, options)
        target = await async_connection(tx) if tx is not None else self._require_connections()
        if self._tracing is None:
            job = await self._store.add_spec(target, spec, mode, limits=limits)
            return JobHandle(job, self._results)
        with self._tracing.enqueue(spec) as span:
            job = await self._store.add_spec(target, spec, mode, limits=limits)
            self._tracing.record_job(span, job)
            return JobHandle(job, self._results)

    async def enqueue_many(
        self,
        items: Sequence[tuple[TaskDef[Any] | str, Any]],
        *,
        tx: AsyncTx | None = None,
    ) -> Sequence[JobHandle[Any]]:
        """Validate and add many jobs in one statement (key mode ``replace``, or
        ``preserve_run_at`` when every keyed task asks for it); return their handles."""
        built = build_specs(self.catalog, items)
        modes = {mode for spec, mode, _ in built if spec.job_key is not None}
        if "unsafe_dedupe" in modes or len(modes) > 1:
            raise ConfigError(
                "job_key_mode",
                "enqueue_many adds with one key mode (replace or preserve_run_at); "
                "enqueue unsafe_dedupe or mixed-mode tasks one by one",
            )
        target = await async_connection(tx) if tx is not None else self._require_connections()
        jobs = await self._store.add_jobs(
            target,
            [spec for spec, _, _ in built],
            job_key_preserve_run_at=modes == {"preserve_run_at"},
            limits=[limits for _, _, limits in built] if self._limited else None,
        )
        return Handles(jobs, self._results)

    async def dequeue(self, job_key: str, *, tx: AsyncTx | None = None) -> Job | None:
        """Remove the job with ``job_key`` (see :meth:`Store.remove_job`); None if none."""
        target = await async_connection(tx) if tx is not None else self._require_connections()
        return await self._store.remove_job(target, job_key)

    async def result(self, job_id: int, *, timeout: float | None = None) -> Any:  # noqa: ASYNC109
        """The result of job ``job_id``, from any process: its output once it succeeded
        (typed by its task's ``output``); raises JobFailed, ResultTimeout or
        ResultUnavailable (:mod:`zodworker.results`)."""
        return await self._results.wait(job_id, timeout)

    def result_sync(self, job_id: int, *, timeout: float | None = None) -> Any:
        """:meth:`result` for synchronous code (a connection of its own while it waits)."""
        return self._results.wait_sync(job_id, timeout)

    @overload
    def enqueue_sync(
        self,
        task: Callable[[P, OutputOf[O]], P],
        payload: P,
        *,
        tx: SyncTx,
        **options: Unpack[EnqueueOptions],
    ) -> JobHandle[O]: ...
    @overload
    def enqueue_sync(
        self,
        task: str,
        payload: Any,
        *,
        tx: SyncTx,
        **options: Unpack[EnqueueOptions],
    ) -> JobHandle[Any]: ...
    def enqueue_sync(
        self,
        task: Callable[..., Any] | str,
        payload: Any,
        *,
        tx: SyncTx,
        **options: Unpack[EnqueueOptions],
    ) -> JobHandle[Any]:
        """:meth:`enqueue` for synchronous code, in the transaction of ``tx`` (a psycopg
        ``Connection``, or an SQLAlchemy ``Session`` / ``Connection`` on psycopg 3). Takes
        the same options; needs no ``initialize()``."""
        spec, mode, limits = build_spec(self.catalog, task, payload, options)
        job = self._sync_store.add_spec(sync_connection(tx), spec, mode, limits=limits)
        return JobHandle(job, self._results)

    def dequeue_sync(self, job_key: str, *, tx: SyncTx) -> Job | None:
        """:meth:`dequeue` for synchronous code, on the caller's ``Connection``."""
        return self._sync_store.remove_job(sync_connection(tx), job_key)
