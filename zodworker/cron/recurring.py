"""Recurring tasks declared in code: what :func:`recurring` describes, what the scheduler
sees of it, and what its handler is told about the run.

``recurring("*/5 * * * *", handler)`` gives a :class:`Recurring`; the client registers it
under an identifier, the scheduler adds its jobs (:meth:`Recurring.cron_job`), and the worker
side calls the handler with the :class:`CronTick` that :func:`decode_tick` reads from the
job's payload. The handler's second argument is the worker's ``JobHelpers``; cron does not
import the worker, so it is typed ``Any`` here and wrapped into a task by the face.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..errors import ConfigError, PermanentFailure
from .phrases import parse_time_phrase
from .schedule import CronSchedule
from .scheduler import CronJob

__all__ = ["CronTick", "Recurring", "check_recurring", "decode_tick", "recurring"]


@dataclass(frozen=True, slots=True)
class CronTick:
    """What a recurring task's handler gets: the scheduled instant and whether the job was
    added late, by backfill."""

    ts: datetime
    backfilled: bool


@dataclass(frozen=True, slots=True)
class Recurring:
    """A recurring task (see :func:`recurring`)."""

    schedule: CronSchedule
    handler: Callable[[CronTick, Any], Any]
    """Called with the :class:`CronTick` and the worker's ``JobHelpers``."""
    fill: float = 0.0
    queue_name: str | None = None
    max_attempts: int | None = None
    priority: int | None = None

    def cron_job(self, identifier: str) -> CronJob:
        """The scheduler's view of this task under ``identifier``."""
        return CronJob(
            identifier=identifier,
            task=identifier,
            matches=self.schedule.matches,
            fill=self.fill,
            queue_name=self.queue_name,
            max_attempts=self.max_attempts,
            priority=self.priority,
        )


def decode_tick(payload: Any) -> CronTick:
    """The :class:`CronTick` in a cron job's payload (its ``_cron`` entry); a payload without
    one raises :class:`~zodworker.errors.PermanentFailure` (retrying cannot help)."""
    try:
        cron = payload["_cron"]
        return CronTick(datetime.fromisoformat(cron["ts"]), bool(cron["backfilled"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise PermanentFailure(f"not a cron job payload: {payload!r}") from exc


def recurring(
    match: str,
    handler: Callable[[CronTick, Any], Any],
    *,
    tz: str | None = None,
    fill: str | float = 0,
    queue_name: str | None = None,
    max_attempts: int | None = None,
    priority: int | None = None,
) -> Recurring:
    """A task run on a cron schedule (``"*/5 * * * *"``, ``"@daily"``...), in UTC or the IANA
    zone ``tz``. ``fill`` (seconds, or a phrase like ``"2h"``) backfills occurrences missed
    while no scheduler ran."""
    seconds: float
    if isinstance(fill, str):
        seconds = parse_time_phrase(fill)
    else:
        try:
            seconds = float(fill)
        except (TypeError, ValueError):
            raise ConfigError(
                "fill", f"expected seconds or a time phrase such as '2h', got {fill!r}"
            ) from None
    return Recurring(CronSchedule(match, tz), handler, seconds, queue_name, max_attempts, priority)


def check_recurring(
    entries: Mapping[str, Recurring] | None, taken: Collection[str]
) -> dict[str, Recurring]:
    """``entries`` checked: each a :class:`Recurring`, none named like a task in ``taken``."""
    checked = dict(entries or {})
    for name, entry in checked.items():
        if not isinstance(entry, Recurring):
            raise ConfigError(f"recurring_tasks[{name!r}]", "must be recurring(...)")
        if name in taken:
            raise ConfigError(
                f"recurring_tasks[{name!r}]", "is also a catalog task; use another identifier"
            )
    return checked
