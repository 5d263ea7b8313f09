"""Every database call a worker pool makes, as plain async functions on a connection pool.

The runner is handed these (fetch, complete, fail, return, heartbeat...) and never sees SQL.
Connections come from a pool this module configures: autocommit (every statement is its own
transaction), msgspec for JSON, and prepared statements unless disabled.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from typing import Any

import msgspec
import psycopg
from psycopg.types.json import set_json_loads
from psycopg_pool import AsyncConnectionPool

from . import sqlfiles
from .job import Job

__all__ = ["Failure", "WorkerStore", "encode_error", "open_pool"]


class Failure(msgspec.Struct, omit_defaults=True):
    """A job that failed: its id, the error message, and optionally a replacement payload
    (batch jobs keep only their failed elements)."""

    id: int
    message: str
    payload: Any = msgspec.UNSET
    permanent: bool = False


_failures_encoder = msgspec.json.Encoder()


def open_pool(
    conninfo: str, *, max_size: int, prepared_statements: bool, name: str
) -> AsyncConnectionPool[psycopg.AsyncConnection[Any]]:
    """A connection pool for a worker pool (not opened yet: ``await pool.open()``)."""

    async def configure(conn: psycopg.AsyncConnection[Any]) -> None:
        set_json_loads(msgspec.json.decode, conn)
        conn.prepare_threshold = 0 if prepared_statements else None

    return AsyncConnectionPool(
        conninfo,
        min_size=1,
        max_size=max_size,
        kwargs={"autocommit": True},
        configure=configure,
        open=False,
        name=name,
    )


class WorkerStore:
    """The runner's queries for one schema and one pool id."""

    __slots__ = ("_pool", "_pool_id", "_q", "task_names")

    def __init__(
        self, pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]], schema: str, pool_id: str
    ) -> None:
        self._pool = pool
        self._pool_id = pool_id
        names = [
            "task_ids",
            "get_jobs",
            "complete_locked_jobs",
            "fail_jobs",
            "return_jobs",
            "reset_stale_locks",
            "register_pool",
            "heartbeat",
            "unregister_pool",
            "reap_dead_pools",
        ]
        self._q = {name: sqlfiles.query(name, schema) for name in names}
        self.task_names: dict[int, str] = {}
        """task id -> identifier, for the tasks this pool runs."""

    async def _fetch(self, name: str, params: Any) -> list[tuple[Any, ...]]:
        async with self._pool.connection() as conn:
            cur = await conn.execute(self._q[name], params, binary=True)
            return await cur.fetchall() if cur.description else []

    async def register_tasks(self, identifiers: Sequence[str]) -> list[int]:
        """Make sure the task rows exist; remember and return their ids.

        A row another transaction is inserting at the same moment is skipped by our insert
        (on conflict) and is not yet visible to our statement's snapshot: those identifiers
        are asked for again in a new statement until every one has its id.
        """
        names: dict[int, str] = {}
        missing = list(dict.fromkeys(identifiers))
        for _ in range(50):
            rows = await self._fetch("task_ids", (missing,))
            names.update({task_id: identifier for task_id, identifier in rows})
            found = set(names.values())
            missing = [identifier for identifier in missing if identifier not in found]
            if not missing:
                break
        else:
            raise RuntimeError(f"could not register task identifiers {missing}")
        self.task_names = names
        return list(names)

    async def get_jobs(self, task_ids: list[int], forbidden: list[str], n: int) -> list[Job]:
        """Lock and return up to ``n`` runnable jobs (attempts already incremented)."""
        rows = await self._fetch(
            "get_jobs",
            {"pool_id": self._pool_id, "task_ids": task_ids, "forbidden": forbidden, "n": n},
        )
        names = self.task_names
        return [
            Job(
                id=r[0],
                job_queue_id=r[1],
                task_id=r[2],
                payload=r[3],
                priority=r[4],
                run_at=r[5],
                attempts=r[6],
                max_attempts=r[7],
                last_error=r[8],
                created_at=r[9],
                updated_at=r[10],
                key=r[11],
                locked_at=r[12],
                locked_by=r[13],
                revision=r[14],
                flags=r[15],
                is_available=False,
                task_identifier=names.get(r[2], ""),
                queue_name=r[16],
            )
            for r in rows
        ]

    async def complete(self, ids: list[int]) -> None:
        """Delete finished jobs and release their queues."""
        await self._fetch("complete_locked_jobs", {"ids": ids, "pool_id": self._pool_id})

    async def fail(self, failures: list[Failure]) -> None:
        """Record failures; each job retries after exp(min(attempts, 10)) seconds."""
        encoded = _failures_encoder.encode(failures).decode()
        await self._fetch("fail_jobs", {"failures": encoded, "pool_id": self._pool_id})

    async def return_jobs(self, ids: list[int]) -> None:
        """Unlock jobs fetched but never started, giving back their attempt."""
        await self._fetch("return_jobs", {"ids": ids, "pool_id": self._pool_id})

    async def reset_stale_locks(self) -> None:
        """graphile-worker's sweep of locks older than 4 hours."""
        await self._fetch("reset_stale_locks", ())

    async def register(self) -> None:
        """Record this pool as alive."""
        await self._fetch(
            "register_pool",
            {"pool_id": self._pool_id, "hostname": socket.gethostname(), "pid": os.getpid()},
        )

    async def heartbeat(self) -> bool:
        """Refresh this pool's liveness; False if it had been presumed dead and released."""
        return bool(await self._fetch("heartbeat", {"pool_id": self._pool_id}))

    async def unregister(self) -> None:
        await self._fetch("unregister_pool", {"pool_id": self._pool_id})

    async def reap_dead_pools(self, timeout_s: float) -> list[int]:
        """Release the locks of pools silent for ``timeout_s``; return the freed job ids."""
        rows = await self._fetch("reap_dead_pools", {"timeout": f"{timeout_s} seconds"})
        return [row[0] for row in rows]


def encode_error(error: BaseException) -> str:
    """The ``last_error`` text for an exception: its type and message."""
    text = str(error)
    name = type(error).__name__
    return f"{name}: {text}" if text else name
