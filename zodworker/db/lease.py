"""A worker pool's lease statements, on a synchronous connection of its own.

The lease thread (:mod:`zodworker.worker.lease`) renews the lease from outside the event
loop, so a handler that blocks the loop cannot make a live pool look dead. Its connection
is a plain blocking psycopg connection, bounded so that a cut network cannot hang it for
long: ``connect_timeout``, TCP keepalives and ``tcp_user_timeout`` (data unacknowledged for
that long closes the connection). Any failure closes the connection; the next call opens a
new one.
"""

from __future__ import annotations

import math
import os
import socket
import threading
from collections.abc import Callable
from typing import Any

import psycopg

from ..errors import DatabaseError
from .connect import Database, application_name
from .rows import Params, fetch_sync, translate_errors

__all__ = ["LeaseStore"]


class LeaseStore:
    """Register, renew, reap and end leases of one schema (thread-safe)."""

    def __init__(
        self,
        database: Database,
        *,
        heartbeat: float,
        lease: float,
        tasks: Callable[[], list[str]] = list,
        counts: Callable[[], tuple[int, int]] = lambda: (0, 0),
    ) -> None:
        """``tasks()``: the identifiers the pool runs, recorded with each lease;
        ``counts()``: the jobs it completed and the attempts that failed since it started,
        written with each heartbeat."""
        self._database = database
        self._tasks = tasks
        self._counts = counts
        self._heartbeat = heartbeat
        self._lease = lease
        timeout = max(1.0, min(lease / 3, 10.0))
        self._kwargs: dict[str, Any] = {
            "autocommit": True,
            **application_name(database.conninfo, "heartbeat"),
            "connect_timeout": max(2, math.ceil(timeout)),
            "tcp_user_timeout": int(timeout * 1000),
            "keepalives": 1,
            "keepalives_idle": max(1, math.ceil(heartbeat)),
            "keepalives_interval": 1,
            "keepalives_count": 3,
        }
        if not database.prepared_statements:
            self._kwargs["prepare_threshold"] = None
        self._conn: psycopg.Connection[Any] | None = None
        self._lock = threading.Lock()

    def _run(self, name: str, params: Params) -> list[Any]:
        query = self._database.query(name)
        with self._lock:
            try:
                with translate_errors():
                    if self._conn is None or self._conn.closed:
                        self._conn = psycopg.connect(self._database.conninfo, **self._kwargs)
                return fetch_sync(self._conn, query, params, binary=True)
            except DatabaseError:
                self._close_locked()
                raise

    def register(self, lease_id: str) -> None:
        """Start the lease ``lease_id`` (expiring one lease length from now)."""
        params = {
            "pool_id": lease_id,
            "hostname": socket.gethostname(),
            "pid": os.getpid(),
            "lease": self._lease,
            "heartbeat": self._heartbeat,
            "tasks": self._tasks(),
        }
        self._run("register_pool", params)

    def renew(self, lease_id: str) -> bool:
        """Renew the lease; False when it is gone or already expired (lost)."""
        completed, failed = self._counts()
        params = {"pool_id": lease_id, "completed": completed, "failed": failed}
        return bool(self._run("heartbeat", params))

    def reap(self) -> list[int]:
        """End the leases of pools presumed dead; return the job ids released."""
        return [row[0] for row in self._run("reap_dead_pools", {})]

    def end(self, lease_id: str) -> list[int]:
        """End the lease ``lease_id``, releasing all it held; return the job ids released."""
        return [row[0] for row in self._run("unregister_pool", {"pool_id": lease_id})]

    def close(self) -> None:
        """Close the connection (the next call opens a new one). Does not wait for a call
        in progress on another thread (that call closes it when it fails)."""
        if self._lock.acquire(timeout=0.1):
            try:
                self._close_locked()
            finally:
                self._lock.release()

    def _close_locked(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
