"""Cron items: what one crontab line stands for, and which value each field accepts.

A :class:`CronItem` is a task, a :class:`~zodworker.cron.schedule.CronSchedule`, a payload
and the job options graphile-worker's crontab allows; constructing one validates every field
and raises :class:`~zodworker.errors.ConfigError` naming the first bad one. Reading and
writing items as crontab text is :mod:`zodworker.cron.crontab`'s business; it checks option
text against the same rules (the underscored names here), so both say the same thing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final, Literal, get_args

from ..errors import ConfigError
from .schedule import CronSchedule

__all__ = ["CronItem", "JobKeyMode"]

JobKeyMode = Literal["replace", "preserve_run_at"]
"""The job key modes a crontab may name (graphile-worker's crontab does not allow
``unsafe_dedupe``)."""

_JOB_KEY_MODES: Final[tuple[str, ...]] = get_args(JobKeyMode)

_TASK: Final = re.compile(r"[_a-zA-Z][_a-zA-Z0-9:/-]*")
_TASK_EXPECTED: Final = (
    "a task identifier (a letter or '_', then letters, digits, '_', ':', '/', '-')"
)
_ID: Final = re.compile(r"[_a-zA-Z][-_a-zA-Z0-9]*")
_ID_EXPECTED: Final = "an identifier (a letter or '_', then letters, digits, '_', '-')"
_QUEUE: Final = re.compile(r"[-a-zA-Z0-9_:]+")
_QUEUE_EXPECTED: Final = "a queue name (letters, digits, '_', ':', '-')"
_MAX_FILL: Final = timedelta.max.days * 86400
_MAX_EXPECTED: Final = "a number of attempts from 1 to 32767"
_PRIORITY_EXPECTED: Final = "a priority from -32768 to 32767"
_JOB_KEY_EXPECTED: Final = "a non-empty job key (UTF-8, no NUL character)"
_MODE_EXPECTED: Final = "'replace' or 'preserve_run_at'"


def _valid_job_key(key: str) -> bool:
    if key == "" or "\x00" in key:
        return False
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _json_roundtrips(payload: object) -> bool:
    try:
        return bool(json.loads(json.dumps(payload, allow_nan=False)) == payload)
    except (TypeError, ValueError, RecursionError):
        return False


def _small_int(value: object, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


@dataclass(frozen=True)
class CronItem:
    """One crontab line: run ``task`` with ``payload`` on ``schedule``.

    Fields not given take graphile-worker's defaults; construction validates every field
    (:class:`~zodworker.errors.ConfigError` naming it). The payload is not part of the hash.
    """

    schedule: CronSchedule
    task: str
    """The task identifier."""
    identifier: str = ""
    """Unique per crontab (``?id=``); empty means the task identifier, which it becomes."""
    payload: dict[str, Any] = field(default_factory=dict, hash=False)
    """A JSON object (empty when the line has none)."""
    fill: int = 0
    """Backfill window in seconds (``?fill=``): missed runs this recent are still added."""
    max_attempts: int | None = None
    queue_name: str | None = None
    priority: int | None = None
    job_key: str | None = None
    job_key_mode: JobKeyMode | None = None
    """``replace`` (the default when ``job_key`` is set) or ``preserve_run_at``."""

    def __post_init__(self) -> None:
        if not isinstance(self.schedule, CronSchedule):
            raise ConfigError(
                "schedule", f"must be a CronSchedule, not {type(self.schedule).__name__}"
            )
        if not isinstance(self.task, str) or not _TASK.fullmatch(self.task):
            raise ConfigError("task", f"expected {_TASK_EXPECTED}, got {self.task!r}")
        if self.identifier == "":
            object.__setattr__(self, "identifier", self.task)
        elif self.identifier != self.task and not _ID.fullmatch(self.identifier):
            raise ConfigError("identifier", f"expected {_ID_EXPECTED}, got {self.identifier!r}")
        if not isinstance(self.payload, dict) or not _json_roundtrips(self.payload):
            raise ConfigError("payload", "expected a dict that JSON encodes and decodes unchanged")
        if not _small_int(self.fill, 0, _MAX_FILL):
            raise ConfigError("fill", f"expected a number of seconds >= 0, got {self.fill!r}")
        if self.max_attempts is not None and not _small_int(self.max_attempts, 1, 32767):
            raise ConfigError(
                "max_attempts", f"expected {_MAX_EXPECTED}, got {self.max_attempts!r}"
            )
        if self.queue_name is not None and not _QUEUE.fullmatch(self.queue_name):
            raise ConfigError("queue_name", f"expected {_QUEUE_EXPECTED}, got {self.queue_name!r}")
        if self.priority is not None and not _small_int(self.priority, -32768, 32767):
            raise ConfigError("priority", f"expected {_PRIORITY_EXPECTED}, got {self.priority!r}")
        if self.job_key is None:
            if self.job_key_mode is not None:
                raise ConfigError("job_key_mode", "only meaningful with a job_key")
        else:
            if not isinstance(self.job_key, str) or not _valid_job_key(self.job_key):
                raise ConfigError("job_key", f"expected {_JOB_KEY_EXPECTED}, got {self.job_key!r}")
            if self.job_key_mode is None:
                object.__setattr__(self, "job_key_mode", "replace")
            elif self.job_key_mode not in _JOB_KEY_MODES:
                raise ConfigError(
                    "job_key_mode", f"expected {_MODE_EXPECTED}, got {self.job_key_mode!r}"
                )

    @property
    def tz(self) -> str | None:
        """The schedule's time zone (``None`` is UTC)."""
        return self.schedule.tz

    def matches(self, when: datetime) -> bool:
        """Whether the item runs in the minute containing ``when``; see
        :meth:`CronSchedule.matches`."""
        return self.schedule.matches(when)

    def next_runs(self, after: datetime, n: int) -> list[datetime]:
        """The next ``n`` runs strictly after ``after``, as aware UTC datetimes."""
        return self.schedule.next_runs(after, n)

    def iter_runs(self, after: datetime) -> Iterator[datetime]:
        """Every run strictly after ``after``, in order; see :meth:`CronSchedule.iter_runs`."""
        return self.schedule.iter_runs(after)
