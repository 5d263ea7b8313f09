"""The cron scheduler: adds each scheduled occurrence of each cron item exactly once, however
many schedulers (zodworker or graphile-worker) share the schema.

Protocol (graphile-worker's, so the two interoperate): every item has a row in
``_private_known_crontabs``. At start, items never seen before are registered (not
backfilled); items already known are backfilled minute by minute over their ``fill`` window,
from their last execution on. Then a timer fires at each minute. For every minute, the items
that match it are claimed with one upsert that moves ``last_execution`` forward only if it is
older; only the statement that moved it gets the row back and adds the job, in the same
transaction. The job's run_at is the scheduled minute and its payload gets
``_cron: {ts, backfilled}``.

The timer copes with early wake-ups (sleeps again), late ones and clock jumps forward (catches
up every missed minute, as the claim makes that safe), and clock jumps backward (waits for the
next unprocessed minute). The clock is injectable for tests (:class:`Clock`).

Every statement goes through :class:`zodworker.db.cron.CronStore`; a failed claim
(:class:`~zodworker.errors.DatabaseError`) is retried with backoff, up to five times.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

import anyio
from anyio.abc import TaskStatus

from ..db.cron import CronStore
from ..errors import ConfigError, DatabaseError
from ..events import Events
from .item import CronItem

if TYPE_CHECKING:
    from ..db.rows import AsyncTarget

__all__ = [
    "MINUTE",
    "Clock",
    "CronJob",
    "CronScheduler",
    "SystemClock",
    "cron_job",
    "floor_minute",
]

MINUTE = timedelta(minutes=1)
"""The scheduler's tick: every minute is considered once."""


class Clock(Protocol):
    """Where the scheduler gets the time and how it waits."""

    def now(self) -> datetime:
        """The current time (aware)."""
        ...

    async def sleep_until(self, when: datetime) -> None:
        """Return at (or after) ``when``; may return early (the scheduler checks)."""
        ...


class SystemClock:
    """The machine's clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep_until(self, when: datetime) -> None:
        await asyncio.sleep(max((when - self.now()).total_seconds(), 0.0))


@dataclass(frozen=True, slots=True)
class CronJob:
    """What the scheduler needs of one cron item."""

    identifier: str
    """Unique per schedule; the row in _private_known_crontabs."""
    task: str
    matches: Callable[[datetime], bool]
    """Whether the item is due at this (whole-minute, aware) instant."""
    fill: float = 0.0
    """Backfill window in seconds."""
    payload: dict[str, Any] | None = None
    queue_name: str | None = None
    max_attempts: int | None = None
    priority: int | None = None
    job_key: str | None = None
    job_key_mode: str | None = None


def cron_job(item: CronItem) -> CronJob:
    """The scheduler's view of a parsed crontab item."""
    return CronJob(
        identifier=item.identifier,
        task=item.task,
        matches=item.matches,
        fill=float(item.fill),
        payload=dict(item.payload),
        queue_name=item.queue_name,
        max_attempts=item.max_attempts,
        priority=item.priority,
        job_key=item.job_key,
        job_key_mode=item.job_key_mode,
    )


def floor_minute(when: datetime) -> datetime:
    """``when`` rounded down to its minute."""
    return when.replace(second=0, microsecond=0)


class CronScheduler:
    """Runs cron items against one schema until cancelled (``await scheduler.run()``).

    ``target`` is a psycopg ``AsyncConnectionPool`` or an autocommit ``AsyncConnection``;
    two items with the same identifier raise :class:`~zodworker.errors.ConfigError`.
    """

    def __init__(
        self,
        items: Sequence[CronJob],
        target: AsyncTarget,
        *,
        schema: str,
        pool_id: str = "cron",
        events: Events | None = None,
        clock: Clock | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        seen: set[str] = set()
        for item in items:
            if item.identifier in seen:
                raise ConfigError("items", f"cron identifier {item.identifier!r} is used twice")
            seen.add(item.identifier)
        self.items = list(items)
        self._store = CronStore(target, schema)
        self._pool_id = pool_id
        self._events = events or Events()
        self._clock = clock or SystemClock()
        self._logger = logger or logging.getLogger("zodworker.cron")

    def replace_items(self, items: Sequence[CronJob]) -> None:
        """Use a new item list from the next minute on (crontab reload)."""
        self.items = list(items)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Register and backfill the items (then report started), and add each minute's
        jobs until cancelled."""
        clock = self._clock
        start = clock.now()
        self._events.emit("cron:starting", self._pool_id, start=start)
        await self._register_and_backfill(start)
        self._events.emit("cron:started", self._pool_id, start=start)
        task_status.started()
        next_minute = floor_minute(start) + MINUTE
        while True:
            await clock.sleep_until(next_minute)
            current = floor_minute(clock.now())
            if current < next_minute:  # woke early (or the clock went back): wait again
                self._events.emit("cron:prematureTimer", self._pool_id, expected=next_minute)
                continue
            if current > next_minute:
                self._events.emit(
                    "cron:overdueTimer", self._pool_id, expected=next_minute, current=current
                )
            minute = next_minute
            while minute <= current:  # every minute since the last one handled, once
                await self._schedule(minute, [i for i in self.items if i.matches(minute)], False)
                minute += MINUTE
            next_minute = current + MINUTE

    async def _register_and_backfill(self, start: datetime) -> None:
        identifiers = [item.identifier for item in self.items]
        known = await self._store.known(identifiers)
        unknown = [i for i in identifiers if i not in known]
        if unknown:
            await self._store.register(unknown, start)
        fill = max((item.fill for item in self.items if item.identifier in known), default=0.0)
        if fill <= 0:
            return
        minute = floor_minute(start - timedelta(seconds=fill))
        if minute < start - timedelta(seconds=fill):
            minute += MINUTE
        while minute < start:
            age = (start - minute).total_seconds()
            due = []
            for item in self.items:
                if item.identifier not in known or item.fill < age:
                    continue
                known_since, last_execution = known[item.identifier]
                not_before = last_execution or known_since
                if minute >= not_before and item.matches(minute):
                    due.append(item)
            if due:
                self._events.emit("cron:backfill", self._pool_id, ts=minute, count=len(due))
                await self._schedule(minute, due, True)
            minute += MINUTE

    async def _schedule(self, minute: datetime, due: list[CronJob], backfilled: bool) -> None:
        if not due:
            return
        ts = minute.astimezone(UTC).isoformat().replace("+00:00", "Z")
        specs = [
            {
                "identifier": item.identifier,
                "task": item.task,
                "payload": {**(item.payload or {}), "_cron": {"ts": ts, "backfilled": backfilled}},
                "queue_name": item.queue_name,
                "max_attempts": item.max_attempts,
                "priority": item.priority,
                "job_key": item.job_key,
                "job_key_mode": item.job_key_mode,
            }
            for item in due
        ]
        self._events.emit("cron:schedule", self._pool_id, ts=minute, count=len(due))
        for attempt in range(5):
            try:
                added = await self._store.schedule(minute, specs)
                break
            except DatabaseError as exc:
                self._logger.warning("scheduling cron jobs for %s failed: %s", ts, exc)
                await asyncio.sleep(min(30.0, 0.5 * 2**attempt))
        else:
            self._logger.error("giving up on cron jobs for %s", ts)
            return
        self._events.emit("cron:scheduled", self._pool_id, ts=minute, added=added)
