"""The pool's lease: kept alive from a thread, watched on the event loop, ended cleanly.

The protocol (each pool, each lease)::

    register(lease) --renew every heartbeat_interval--> held --clean stop--> end(lease)
          |                                                |  (releases all it held)
          |              no renewal for recovery_timeout - 2 x heartbeat_interval (local
          |              clock), or a renewal finds the row gone or expired
          |                                                v
          '--------- register(new lease id) <------ lost: abort running handlers, give
                                                    back their jobs and the buffered ones

* The lease row carries its own expiry (``recovery_timeout`` after each renewal, by this
  pool's own setting); any pool's reaper ends leases past their expiry and releases the
  jobs and queues they held. So a pool is judged only by its own settings.
* Renewals run in a thread of their own with their own blocking connection: a handler that
  blocks the event loop does not stop them.
* The holder gives up first. Its deadline counts from the moment it *sent* its last renewal
  that succeeded, so it falls at least ``2 x heartbeat_interval`` before the expiry the
  database recorded; at that deadline (checked on the event loop) the pool aborts its
  running handlers (abort signal, then cancellation) and never writes their outcomes;
  another pool can take the jobs over only after the expiry.
* A lost lease is never renewed again: the pool starts a new lease with a new id, so a late
  write under the old one (fenced by ``locked_by``) cannot touch a job fetched anew.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Literal, Protocol

import anyio
from anyio.abc import TaskStatus

__all__ = ["LeaseKeeper", "LeaseStatements"]


class LeaseStatements(Protocol):
    """The blocking statements the lease thread runs (``zodworker.db.lease.LeaseStore``)."""

    def register(self, lease_id: str) -> None: ...
    def renew(self, lease_id: str) -> bool: ...
    def reap(self) -> list[int]: ...
    def end(self, lease_id: str) -> list[int]: ...
    def close(self) -> None: ...


class LeaseKeeper:
    """Holds one pool's lease (see the module docs)."""

    def __init__(
        self,
        statements: LeaseStatements,
        *,
        pool_id: str,
        interval: float,
        lease: float,
        on_lost: Callable[[str, str], None],
        on_regained: Callable[[str], None],
        on_released: Callable[[list[int]], None],
        logger: logging.Logger,
    ) -> None:
        """``on_lost(lease_id, reason)``, ``on_regained(new_lease_id)`` and
        ``on_released(job_ids)`` (jobs of dead pools made free) run on the event loop."""
        self._statements = statements
        self._pool_id = pool_id
        self._interval = interval
        self._lease = lease
        self._on_lost = on_lost
        self._on_regained = on_regained
        self._on_released = on_released
        self._logger = logger
        self._lock = threading.Lock()
        self._state: Literal["held", "lost"] = "held"
        self._generation = 0
        self.lease_id = pool_id
        """The lease held now (or being started)."""
        self._renewed_at = 0.0
        self._stop = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def deadline(self) -> float:
        """When (``time.monotonic``) the holder gives the lease up without a renewal."""
        return self._renewed_at + self._lease - 2 * self._interval

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Start the first lease, then keep it (thread) and watch its deadline (here) until
        cancelled. Start-up errors (the database refused the lease) surface at ``start``."""
        self._loop = asyncio.get_running_loop()
        sent = time.monotonic()
        await anyio.to_thread.run_sync(self._statements.register, self.lease_id)
        self._renewed_at = sent
        thread = threading.Thread(target=self._keep, name=f"{self._pool_id}-lease", daemon=True)
        thread.start()
        task_status.started()
        try:
            await self._watch()
        finally:
            self._stop.set()

    async def _watch(self) -> None:
        while True:
            with self._lock:
                held, lease_id, deadline = self._state == "held", self.lease_id, self.deadline
            now = time.monotonic()
            if held and now >= deadline:
                self._lose(lease_id, f"not renewed for {now - self._renewed_at:.1f}s")
                continue
            await asyncio.sleep(max(0.01, min(deadline - now, self._interval / 2)))

    def _lose(self, lease_id: str, reason: str) -> None:
        """Mark ``lease_id`` lost (once) and tell the pool; from any thread."""
        with self._lock:
            if self._state != "held" or self.lease_id != lease_id:
                return
            self._state = "lost"
        self._logger.error("lease %s lost (%s): aborting its running jobs", lease_id, reason)
        self._call_soon(self._on_lost, lease_id, reason)

    def _call_soon(self, callback: Callable[..., object], *args: object) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(callback, *args)

    def _keep(self) -> None:
        """The lease thread: renew (or start a new lease after a loss), reap, repeat."""
        while not self._stop.wait(self._interval):
            with self._lock:
                state, lease_id = self._state, self.lease_id
            try:
                if state == "held":
                    self._renew(lease_id)
                else:
                    self._restart()
                released = self._statements.reap()
            except Exception as exc:  # the database may come back; the deadline decides
                self._logger.warning("lease %s: heartbeat failed: %s", lease_id, exc)
                continue
            if released:
                self._logger.warning("released %d jobs of dead pools", len(released))
                self._call_soon(self._on_released, released)
        self._statements.close()

    def _renew(self, lease_id: str) -> None:
        sent = time.monotonic()
        if self._statements.renew(lease_id):
            with self._lock:
                if self.lease_id == lease_id and self._state == "held":
                    self._renewed_at = sent
        else:
            self._lose(lease_id, "the lease was ended by another pool or had expired")

    def _restart(self) -> None:
        """Start a new lease under a new id (the lost one is never renewed again)."""
        with self._lock:
            self._generation += 1
            new_id = f"{self._pool_id}~{self._generation}"
        sent = time.monotonic()
        self._statements.register(new_id)
        with self._lock:
            self.lease_id, self._state, self._renewed_at = new_id, "held", sent
        self._logger.warning("started a new lease %s", new_id)
        self._call_soon(self._on_regained, new_id)

    async def end(self, timeout: float) -> None:  # noqa: ASYNC109
        """Stop renewing and end the lease (releasing what it still holds), waiting at most
        ``timeout`` seconds for the database (an unreachable one lets it expire)."""
        self._stop.set()
        with self._lock:
            lease_id = self.lease_id
        try:
            with anyio.fail_after(timeout):
                await anyio.to_thread.run_sync(
                    self._statements.end, lease_id, abandon_on_cancel=True
                )
        except Exception as exc:
            self._logger.warning("could not end lease %s (%s); it will expire", lease_id, exc)
        finally:
            self._statements.close()
