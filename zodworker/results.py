"""Waiting for jobs' results: handles, one LISTEN per client, polling as the fallback.

::

    class Catalog(TaskCatalog):
        resize = task(Resize, handler=resize, output=Resized)   # the handler returns Resized

    handle = await client.enqueue(Catalog.resize, Resize(url=...))
    resized = await handle.result(timeout=30)       # a Resized, validated
    resized = await client.result(handle.id)        # the same, from any process
    resized = handle.result_sync(timeout=30)         # from synchronous code

A task keeps results when it declares ``output`` (or ``history=True``, or the worker runs
with ``history=True``): when one of its jobs finishes for good, the zodworker pool that ran
it writes a history row in the same statement as the outcome and sends NOTIFY
``zodworker:result`` with the job's id. A result ends in one of:

* the output: the job succeeded (decoded into the task's ``output`` type when it has one);
* :class:`~zodworker.errors.JobFailed`: it failed for good (attempts used up, or
  ``PermanentFailure``) or was cancelled; carries the last error and the attempts;
* :class:`~zodworker.errors.ResultTimeout`: ``timeout`` passed first; the job is untouched;
* :class:`~zodworker.errors.ResultUnavailable`: the job is gone and left no history row
  (its task keeps no results, it was removed or ran on a Node graphile-worker, or its row
  was pruned).

A job still in the jobs table with its attempts used up and unlocked has failed for good
whether or not its task keeps results, so failures are seen for every task.

:class:`ResultWaiter` is the client's: one connection LISTENs for every awaited job (10,000
awaits do not open 10,000 connections), notifications wake a single checker that asks
where the notified jobs stand in one query, and every ``poll_interval`` seconds it asks
about all awaited jobs (a notification lost with a broken connection costs at most that).
The synchronous twin opens one connection per wait.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, Final, Generic

import anyio
import msgspec
from anyio.abc import TaskStatus
from typing_extensions import TypeVar

from .db.results import ResultState, listening
from .errors import JobFailed, LifecycleError, ResultTimeout, ResultUnavailable, UsageError
from .job import Job
from .lifecycle import Host

if TYPE_CHECKING:
    from .catalog import TaskCatalog

__all__ = ["JobHandle", "ResultWaiter", "Results", "pending", "settle"]

O = TypeVar("O", default=Any)  # noqa: E741

_CHUNK: Final = 5_000
"""Jobs asked about in one query."""
PENDING: Final[Any] = object()


def pending(state: ResultState) -> bool:
    """The job is still there and may still run (locked, or attempts left): wait on."""
    attempts = state.job_attempts
    return attempts is not None and bool(
        state.job_locked or attempts < (state.job_max_attempts or 0)
    )


def settle(state: ResultState) -> Any:
    """What a job's state means for a waiter: :data:`PENDING`, a success's output (JSON
    text or None), or the error to raise."""
    if pending(state):
        return PENDING
    if state.outcome in ("failed", "cancelled"):  # the pool recorded it: the attempts made
        return JobFailed(state.job_id, state.outcome, state.last_error, state.attempts)
    if state.job_attempts is not None:  # failed for good with no row of ours (Node, operator)
        error = state.job_last_error
        cancelled = error == "cancelled" or (error or "").startswith("JobCancelled")
        return JobFailed(
            state.job_id, "cancelled" if cancelled else "failed", error, state.job_attempts
        )
    if state.outcome == "success":
        return state.output
    return ResultUnavailable(state.job_id)


Listen = Callable[[], AbstractAsyncContextManager[AsyncIterator[tuple[str, str]]]]
States = Callable[[Sequence[int]], Awaitable[list[ResultState]]]


class ResultWaiter:
    """Futures by job id, settled by one LISTEN connection and polling (module docs)."""

    def __init__(
        self, *, listen: Listen, states: States, poll_interval: float, logger: logging.Logger
    ) -> None:
        self._listen = listen
        self._states = states
        self._poll_interval = poll_interval
        self._logger = logger
        self._waiting: dict[int, list[asyncio.Future[ResultState]]] = {}
        self._asked: set[int] = set()
        self._wake = asyncio.Event()
        self._host = Host(self._run, self._request_stop)
        self._stop = asyncio.Event()

    @property
    def waiting(self) -> int:
        """How many jobs are awaited now."""
        return len(self._waiting)

    async def wait(self, job_id: int, timeout: float | None) -> ResultState:  # noqa: ASYNC109
        """The settled state of ``job_id`` (see :func:`settle`); ResultTimeout after
        ``timeout`` seconds (None: no limit)."""
        await self._host.start()  # LISTENing before the first look (or polling, if it fails)
        future: asyncio.Future[ResultState] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(job_id, []).append(future)
        self._ask([job_id])
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise ResultTimeout(job_id, timeout or 0.0) from None
        finally:
            self._forget(job_id, future)

    def _forget(self, job_id: int, future: asyncio.Future[ResultState]) -> None:
        futures = self._waiting.get(job_id)
        if futures is not None and future in futures:
            futures.remove(future)
            if not futures:
                del self._waiting[job_id]

    def _ask(self, ids: Iterable[int]) -> None:
        self._asked.update(ids)
        self._wake.set()

    async def close(self) -> None:
        """Stop listening; waits still pending raise :class:`LifecycleError` (the jobs are
        left alone: wait for them again with another client)."""
        await self._host.stop()
        waiting, self._waiting = self._waiting, {}
        for job_id, futures in waiting.items():
            for future in futures:
                if not future.done():
                    future.set_exception(
                        LifecycleError(f"the client stopped while job {job_id} was awaited")
                    )

    def _request_stop(self) -> None:
        self._stop.set()

    async def _run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        async with anyio.create_task_group() as group:
            await group.start(self._listen_loop)
            group.start_soon(self._check_loop)
            group.start_soon(self._poll_loop)
            task_status.started()
            await self._stop.wait()
            group.cancel_scope.cancel()

    async def _listen_loop(self, *, task_status: TaskStatus[None]) -> None:
        failures, started = 0, False
        while True:
            try:
                async with self._listen() as notifications:
                    failures = 0
                    if not started:
                        started = True
                        task_status.started()
                    self._ask(self._waiting)  # anything missed while not listening
                    async for _, payload in notifications:
                        ids = (int(part) for part in payload.split(",") if part.isdigit())
                        self._ask(job_id for job_id in ids if job_id in self._waiting)
            except Exception as exc:
                if not started:
                    started = True
                    task_status.started()  # polling covers it meanwhile
                failures += 1
                delay = min(30.0, 0.25 * 2 ** min(failures, 7)) * (0.5 + random.random() / 2)
                self._logger.warning("result LISTEN lost (%s); again in %.1fs", exc, delay)
                await asyncio.sleep(delay)

    async def _poll_loop(self) -> None:
        while True:
            await asyncio.sleep(self._poll_interval)
            if self._waiting:
                self._ask(self._waiting)

    async def _check_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            asked, self._asked = self._asked, set()
            ids = [job_id for job_id in asked if job_id in self._waiting]
            for start in range(0, len(ids), _CHUNK):
                try:
                    states = await self._states(ids[start : start + _CHUNK])
                except Exception as exc:  # the next poll asks again
                    self._logger.warning("asking for job results failed: %s", exc)
                    break
                for state in states:
                    if not pending(state):
                        for future in self._waiting.pop(state.job_id, []):
                            if not future.done():
                                future.set_result(state)


class Results:
    """Results for one client: decode outputs with its catalog, wait async or sync."""

    def __init__(
        self,
        catalog: TaskCatalog,
        *,
        waiter: Callable[[], ResultWaiter],
        sync_states: Callable[[Any, Sequence[int]], list[ResultState]],
        conninfo: Callable[[], str | None],
        poll_interval: float,
    ) -> None:
        self._catalog = catalog
        self._waiter = waiter
        self._sync_states = sync_states
        self._conninfo = conninfo
        self.poll_interval = poll_interval
        """Seconds between two looks at awaited jobs besides NOTIFY."""

    def output(self, state: ResultState) -> Any:
        """The result of a settled state: the output (typed by the task's ``output``), or
        the error raised."""
        settled = settle(state)
        if isinstance(settled, Exception):
            raise settled
        value = None if settled is None else msgspec.json.decode(settled)
        spec = self._catalog.get(state.task or "")
        if spec is None or spec.output_codec is None:
            return value
        return spec.output_codec.validate(value, task=spec.identifier)

    async def wait(self, job_id: int, timeout: float | None = None) -> Any:  # noqa: ASYNC109
        """The result of job ``job_id`` (see the module docs)."""
        return self.output(await self._waiter().wait(job_id, timeout))

    def wait_sync(self, job_id: int, timeout: float | None = None) -> Any:
        """:meth:`wait` for synchronous code: one connection of its own for the wait."""
        conninfo = self._conninfo()
        if conninfo is None:
            raise UsageError(
                "result_sync needs a database: pass database_url= to the client or set DATABASE_URL"
            )
        deadline = None if timeout is None else time.monotonic() + timeout
        with listening(conninfo) as listener:
            while True:
                [state] = self._sync_states(listener.conn, [job_id])
                if not pending(state):
                    return self.output(state)
                left = self.poll_interval
                if deadline is not None:
                    left = min(left, deadline - time.monotonic())
                    if left <= 0:
                        raise ResultTimeout(job_id, timeout or 0.0)
                listener.wait(left)


class JobHandle(Generic[O]):
    """What ``enqueue`` returns: the job as added (``handle.job``; its fields read through,
    ``handle.id``, ``handle.key``...) and the way to its result."""

    __slots__ = ("_results", "job")

    def __init__(self, job: Job, results: Results) -> None:
        self.job = job
        self._results = results

    @property
    def id(self) -> int:
        """The job's id (give it to ``client.result(job_id)`` in another process)."""
        return self.job.id

    async def result(self, timeout: float | None = None) -> O:  # noqa: ASYNC109
        """The job's output once it succeeded; raises JobFailed, ResultTimeout or
        ResultUnavailable (see :mod:`zodworker.results`)."""
        value: O = await self._results.wait(self.job.id, timeout)
        return value

    def result_sync(self, timeout: float | None = None) -> O:
        """:meth:`result` for synchronous code."""
        value: O = self._results.wait_sync(self.job.id, timeout)
        return value

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in self.__slots__:  # copy, pickle, a half-made handle
            raise AttributeError(name)
        return getattr(self.job, name)

    def __repr__(self) -> str:
        return f"JobHandle(id={self.job.id}, task={self.job.task_identifier!r})"
