"""Every statement a worker pool sends, as plain async methods.

The worker pool hands these methods (fetch, complete, fail, return, heartbeat, reap...) to
its parts as plain functions; no part of ``zodworker.worker`` sees SQL. Jobs are locked with
the pool's id as ``locked_by``, like graphile-worker, so the admin functions and Node workers
agree on who holds what. The fetch and the results go through the process's shared pool; the
liveness statements (register, heartbeat, reap, unregister) through the pool's own heartbeat
connection, so handlers that hold every pooled connection cannot make a live pool look dead.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from typing import Any, Final

import msgspec
from psycopg.rows import RowFactory, tuple_row

from ..errors import DatabaseError
from ..job import Job
from .connect import Database
from .rows import Params, fetch, job_rows, translate_errors

__all__ = ["Failure", "WorkerStore"]

_REGISTER_ROUNDS: Final = 50


class Failure(msgspec.Struct, omit_defaults=True):
    """A job that failed: its id, the error message, and optionally a replacement payload
    (batch jobs keep only their failed elements); ``permanent`` uses up its attempts."""

    id: int
    message: str
    payload: Any = msgspec.UNSET
    permanent: bool = False


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
    """The worker pool's statements for one schema and one pool id."""

    __slots__ = ("_beat", "_connections", "_jobs", "_pool_id", "_queries", "task_names")

    def __init__(self, database: Database, pool_id: str) -> None:
        self._connections = database.connections
        self._queries = _Queries(database)
        self._pool_id = pool_id
        self._beat = database.heartbeat_connection()
        self.task_names: dict[int, str] = {}
        """task id -> identifier, for the tasks this pool runs (updated in place)."""
        self._jobs = job_rows(self.task_names)

    async def _pooled(
        self, name: str, params: Params, rows: RowFactory[Any] = tuple_row
    ) -> list[Any]:
        query = self._queries[name]
        with translate_errors():  # also covers borrowing (a pool timeout)
            async with self._connections.connection() as conn:
                return await fetch(conn, query, params, rows=rows, binary=True)

    async def _liveness(self, name: str, params: Params) -> list[Any]:
        async with self._beat.connection() as conn:
            return await fetch(conn, self._queries[name], params, binary=True)

    async def close(self) -> None:
        """Close the heartbeat connection."""
        await self._beat.close()

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
        return list(names)

    async def get_jobs(self, task_ids: list[int], forbidden: list[str], n: int) -> list[Job]:
        """Lock and return up to ``n`` runnable jobs (attempts already incremented)."""
        params = {"pool_id": self._pool_id, "task_ids": task_ids, "forbidden": forbidden, "n": n}
        return await self._pooled("get_jobs", params, self._jobs)

    async def complete(self, ids: list[int]) -> None:
        """Delete finished jobs and release their queues."""
        await self._pooled("complete_locked_jobs", {"ids": ids, "pool_id": self._pool_id})

    async def fail(self, failures: list[Failure]) -> None:
        """Record failures; each job retries after exp(min(attempts, 10)) seconds."""
        encoded = _failures_encoder.encode(failures).decode()
        await self._pooled("fail_jobs", {"failures": encoded, "pool_id": self._pool_id})

    async def return_jobs(self, ids: list[int]) -> None:
        """Unlock jobs fetched but never started, giving back their attempt."""
        await self._pooled("return_jobs", {"ids": ids, "pool_id": self._pool_id})

    async def reset_stale_locks(self) -> None:
        """graphile-worker's sweep of locks older than 4 hours."""
        await self._pooled("reset_stale_locks", ())

    async def register(self) -> None:
        """Record this pool as alive."""
        host, pid = socket.gethostname(), os.getpid()
        await self._liveness(
            "register_pool", {"pool_id": self._pool_id, "hostname": host, "pid": pid}
        )

    async def heartbeat(self) -> bool:
        """Refresh this pool's liveness; False if it had been presumed dead and released."""
        return bool(await self._liveness("heartbeat", {"pool_id": self._pool_id}))

    async def unregister(self) -> None:
        """Forget this pool (a clean shutdown)."""
        await self._liveness("unregister_pool", {"pool_id": self._pool_id})

    async def reap_dead_pools(self, timeout_s: float) -> list[int]:
        """Release the locks of pools silent for ``timeout_s``; return the freed job ids."""
        rows = await self._liveness("reap_dead_pools", {"timeout": f"{timeout_s} seconds"})
        return [row[0] for row in rows]
