"""Every statement a worker pool sends for its jobs, as plain async methods.

The worker pool hands these methods (fetch, complete, fail, return) to its parts as plain
functions; no part of ``zodworker.worker`` sees SQL. Jobs are locked with the pool's current
lease id as ``locked_by`` (graphile-worker's column, so its admin functions and Node workers
agree on who holds what), and only while that lease exists and has not expired. Every
outcome is written *fenced*: only where the job is still locked by the lease it was fetched
under (its ``locked_by``), releasing the job's named queue from the pool's own copy of the
job. The lease itself is kept by :mod:`zodworker.db.lease`, on a connection of its own.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, Final, TypeVar

import msgspec
from psycopg.rows import RowFactory, tuple_row

from ..errors import DatabaseError
from .connect import Database
from .rows import (
    AsyncConn,
    LazyRows,
    Params,
    fetch,
    fetch_lazy,
    int_array,
    is_connection_error,
    job_rows,
    run_pipelined,
    translate_errors,
)

__all__ = ["Failure", "WorkerStore"]

_REGISTER_ROUNDS: Final = 50
T = TypeVar("T")


class Failure(msgspec.Struct, omit_defaults=True):
    """A job that failed: its id, the error message, and optionally a replacement payload
    (batch jobs keep only their failed elements); ``permanent`` uses up its attempts.
    ``record`` (``"failed"`` or ``"cancelled"``): its task keeps results, so a final
    failure is written to the history with that outcome, ``attempts`` (made, this one
    included) and ``duration``."""

    id: int
    message: str
    payload: Any = msgspec.UNSET
    permanent: bool = False
    record: str = ""
    attempts: int = 0
    duration: float = 0.0


_failures_encoder = msgspec.json.Encoder()


class _Queries(dict[str, bytes]):
    """The named queries rendered for the database's schema, looked up once each."""

    def __init__(self, database: Database) -> None:
        super().__init__()
        self._database = database

    def __missing__(self, name: str) -> bytes:
        self[name] = query = self._database.query(name)
        return query


class WorkerStore:
    """The worker pool's job statements for one schema."""

    __slots__ = (
        "_connections",
        "_fetched",
        "_limited",
        "_queries",
        "lease_id",
        "on_limited_written",
        "task_names",
    )

    def __init__(self, database: Database, pool_id: str) -> None:
        self._connections = database.connections
        self._queries = _Queries(database)
        self.lease_id = pool_id
        """The lease this pool fetches under (a new one after a lease was lost)."""
        self.task_names: dict[int, str] = {}
        """task id -> identifier, for the tasks this pool runs (updated in place)."""
        # the fetch's rows: payloads decoded by msgspec in the row factory (rows.fetch_lazy)
        self._fetched = job_rows(self.task_names, payload_json=msgspec.json.decode)
        self._limited: set[int] = set()  # ids of jobs fetched under limits, until written
        self.on_limited_written: Callable[[], None] = lambda: None
        """Called once slots of limited jobs were freed by an outcome this pool wrote
        (the pool then looks for limited jobs at once)."""

    async def _pooled(
        self, name: str, params: Params, rows: RowFactory[Any] = tuple_row
    ) -> list[Any]:
        """Run a statement on a pooled connection (:meth:`_retried`); return its rows."""
        query = self._queries[name]
        return await self._retried(lambda conn: fetch(conn, query, params, rows=rows, binary=True))

    async def _retried(self, run: Callable[[AsyncConn], Awaitable[T]]) -> T:
        """``run`` on a pooled connection. When the connection turns out to be dead (the
        server restarted, the network was cut), every idle connection is checked and broken
        ones dropped, then ``run`` is tried once more on a fresh connection. Retrying is
        safe: writes are fenced, and a fetch whose answer was lost is reconciled by the local
        queue (``return_unknown``)."""
        try:
            return await self._once(run)
        except DatabaseError as exc:
            if not is_connection_error(exc):
                raise
        with translate_errors():
            await self._connections.check()
        return await self._once(run)

    async def _once(self, run: Callable[[AsyncConn], Awaitable[T]]) -> T:
        with translate_errors():  # also covers borrowing (a pool timeout)
            async with self._connections.connection() as conn:
                return await run(conn)

    async def register_tasks(self, identifiers: Sequence[str]) -> list[int]:
        """Make sure the task rows exist; remember and return their ids.

        A row another transaction is inserting at the same moment is skipped by our insert
        (on conflict) and is not yet visible to our statement's snapshot: those identifiers
        are asked for again in a new statement until every one has its id.
        """
        names: dict[int, str] = {}
        missing = list(dict.fromkeys(identifiers))
        for _ in range(_REGISTER_ROUNDS):
            rows = await self._pooled("task_ids", (missing,))
            names.update({task_id: identifier for task_id, identifier in rows})
            found = set(names.values())
            missing = [identifier for identifier in missing if identifier not in found]
            if not missing:
                break
        else:
            raise DatabaseError(f"could not register task identifiers {missing}")
        self.task_names.clear()
        self.task_names.update(names)
        await self._pooled("set_pool_tasks", {"pool_id": self.lease_id, "tasks": list(identifiers)})
        return list(names)

    async def get_jobs(self, task_ids: list[int], forbidden: list[str], n: int) -> LazyRows:
        """Lock and return up to ``n`` runnable jobs (attempts already incremented), each
        decoded when first read; all are locked by ``lease`` of the result."""
        lease = self.lease_id
        params = {"pool_id": lease, "task_ids": task_ids, "forbidden": forbidden, "n": n}
        query = self._queries["get_jobs"]
        return await self._retried(lambda conn: self._fetch(conn, query, params, lease))

    def _fetch(
        self, conn: AsyncConn, query: bytes, params: Params, lease: str
    ) -> Awaitable[LazyRows]:
        return fetch_lazy(conn, query, params, self._fetched, lease, raw_payload=True)

    async def get_limited_jobs(
        self, task_ids: list[int], forbidden: list[str], n: int
    ) -> Sequence[Any]:
        """:meth:`get_jobs` for jobs under limits (``zodworker.limits``): only while every
        limit a job is under has room, keys least recently served first."""
        lease = self.lease_id
        params = {"pool_id": lease, "task_ids": task_ids, "forbidden": forbidden, "n": n}
        query = self._queries["get_limited_jobs"]
        jobs = await self._retried(lambda conn: self._fetch(conn, query, params, lease))
        if jobs:
            self._limited.update(job.id for job in jobs)
        return jobs

    async def limits_next_room(self) -> float | None:
        """Seconds until a full rate-limited key has room again (None: none is full)."""
        rows = await self._pooled("limits_next_room", {})
        return None if not rows or rows[0][0] is None else float(rows[0][0])

    async def reconcile_limits(self) -> int:
        """The limits' frequent housekeeping (frees slots of jobs others unlocked, drops
        old rate-window starts); returns the slots freed."""
        rows = await self._pooled("reconcile_limits", {})
        return int(rows[0][0]) if rows else 0

    async def tidy_limits(self) -> None:
        """The limits' rare housekeeping (forgets limits of jobs removed by others)."""
        await self._pooled("tidy_limits", {})

    async def _written(
        self, name: str, params: Params, owner: str, ids: list[int], *then: tuple[str, Params]
    ) -> None:
        """Write an outcome (and the statements ``then``, in the same round trip); for jobs
        fetched under limits, in that round trip free their slots (``release_limited``,
        which tells every pool there is room)."""
        limited = self._limited
        mine = [job_id for job_id in ids if job_id in limited] if limited else None
        if not mine and not then:
            await self._pooled(name, params)
            return
        statements = [(self._queries[name], params)]
        statements += [(self._queries[other], values) for other, values in then]
        if mine:
            release = {"ids": int_array(mine), "owner": owner}
            statements.append((self._queries["release_limited"], release))
        await self._retried(lambda conn: run_pipelined(conn, statements))
        if mine:
            limited.difference_update(mine)
            self.on_limited_written()

    async def complete(self, owner: str, ids: list[int], queue_ids: list[int]) -> None:
        """Delete finished jobs still locked by ``owner`` and release their queues."""
        params = {"ids": int_array(ids), "queue_ids": int_array(queue_ids), "owner": owner}
        await self._written("complete_locked_jobs", params, owner, ids)

    async def fail(self, owner: str, failures: list[Failure], queue_ids: list[int]) -> None:
        """Record failures of jobs still locked by ``owner``; each retries after
        exp(min(attempts, 10)) seconds. Releases their queues."""
        encoded = _failures_encoder.encode(failures).decode()
        params = {"failures": encoded, "queue_ids": int_array(queue_ids), "owner": owner}
        ids = [failure.id for failure in failures]
        kept = [failure for failure in failures if failure.record]
        if not kept:
            await self._written("fail_jobs", params, owner, ids)
            return
        record = {
            "ids": [failure.id for failure in kept],
            "outcomes": [failure.record for failure in kept],
            "attempts": [failure.attempts for failure in kept],
            "durations": [failure.duration for failure in kept],
        }
        await self._written("fail_jobs", params, owner, ids, ("record_failures", record))

    async def complete_recorded(
        self, owner: str, done: list[tuple[int, str | None, float]], queue_ids: list[int]
    ) -> None:
        """:meth:`complete` for jobs whose task keeps results: ``(id, output JSON text,
        seconds it ran)`` each; their history rows are written in the same statement and
        result waiters are told."""
        ids = [job_id for job_id, _, _ in done]
        params = {
            "ids": int_array(ids),
            "outputs": [output for _, output, _ in done],
            "durations": [duration for _, _, duration in done],
            "queue_ids": int_array(queue_ids),
            "owner": owner,
        }
        await self._written("complete_recorded_jobs", params, owner, ids)

    async def prune_history(
        self, age: float | None, keep: int | None, batch: int = 10_000, rest: float = 1.0
    ) -> int:
        """Delete history rows older than ``age`` seconds or beyond the newest ``keep``, in
        statements of ``batch`` rows (each its own short transaction); return how many.
        After each statement it rests ``rest`` times as long as the statement took, so a
        big prune leaves the database to the workers most of the time."""
        rows = await self._pooled("history_cutoff", {"age": age, "keep": keep})
        before = rows[0][0] if rows else None
        pruned = 0
        while before is not None:
            started = time.perf_counter()
            rows = await self._pooled("prune_history", {"before": before, "batch": batch})
            count = int(rows[0][0])
            pruned += count
            if count < batch:
                break
            await asyncio.sleep(rest * (time.perf_counter() - started))
        return pruned

    async def snooze(
        self, owner: str, snoozes: list[tuple[int, float]], queue_ids: list[int]
    ) -> None:
        """Put jobs still locked by ``owner`` back to run ``seconds`` from now, giving back
        the attempt their fetch counted and recording no error; release their queues."""
        ids = [job_id for job_id, _ in snoozes]
        seconds = [wait for _, wait in snoozes]
        params = {
            "ids": int_array(ids),
            "seconds": seconds,
            "queue_ids": int_array(queue_ids),
            "owner": owner,
        }
        await self._written("snooze_jobs", params, owner, ids)

    async def return_jobs(self, owner: str, ids: list[int], queue_ids: list[int]) -> None:
        """Unlock jobs fetched under ``owner`` but never started (or aborted), giving back
        their attempt; release their queues."""
        params = {"ids": int_array(ids), "queue_ids": int_array(queue_ids), "owner": owner}
        await self._written("return_jobs", params, owner, ids)

    async def return_unknown(self, owner: str, known: set[int]) -> list[int]:
        """Give back the jobs locked under ``owner`` whose ids are not in ``known`` (after a
        fetch whose answer was lost); return their ids."""
        params = {"owner": owner, "known": list(known)}
        return [row[0] for row in await self._pooled("return_unknown_jobs", params)]

    async def cancellations_for(self, ids: list[int]) -> list[int]:
        """Which of the given (running) jobs an operator cancelled."""
        return [row[0] for row in await self._pooled("cancellations_for", {"ids": ids})]

    async def unserved_tasks(self, waited: float) -> list[tuple[str, int, datetime]]:
        """Tasks with jobs ready for over ``waited`` seconds that no live zodworker pool
        runs: (identifier, jobs seen, oldest run_at), from at most 10,000 such jobs."""
        rows = await self._pooled("unserved_tasks", {"waited": waited, "limit": 10_000})
        return [(str(name), int(count), oldest) for name, count, oldest in rows]

    async def live_pools(self) -> int:
        """How many zodworker pools hold a live lease here, this one included."""
        rows = await self._pooled("live_pools", {})
        return int(rows[0][0])

    async def reapply_pauses(self) -> None:
        """Pause again the paused queues whose lock someone cleared."""
        await self._pooled("reapply_pauses", {})

    async def reset_stale_locks(self) -> None:
        """graphile-worker's sweep of locks older than 4 hours."""
        await self._pooled("reset_stale_locks", ())
