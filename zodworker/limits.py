"""Flow control: concurrency and rate limits, per named limit and per key.

A :class:`Limit` is named; every job under it shares its numbers, across every task that
names it and every zodworker pool on the database::

    Limit("smtp", rate=Rate(20, per=1.0))                   # at most 20 starts a second
    Limit("tenant", concurrency=3, key=lambda p: p.tenant)  # at most 3 at once per tenant
    Limit("tenant", key=lambda p: p.tenant)                 # no cap: tenants served in turn

A job may be under a few limits (:data:`MAX_LIMITS_PER_JOB`); it starts only while every
one of them has room for its key, and its first limit decides its turn: keys with work are
served least recently served first, so one key's backlog never starves another's.

State of a job under limits (``sql/zodworker/000006.sql`` keeps it)::

    waiting (flag zw:limited, a row per limit) --fetch, every limit has room--> running
      running holds one slot per limit (and left a start in each rate window)
      running --complete--> gone (slots freed, rows forgotten)
      running --fail / give back / lease lost / unlocked by others--> waiting (slots freed)

The numbers in code are *declared*; an operator may set others at run time
(``Admin.set_limit``, ``zodworker limits set``), which hold until reset and take effect at
every pool's next fetch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final

from .errors import JobSpecError

__all__ = [
    "LIMITED_FLAG",
    "MAX_LIMITS_PER_JOB",
    "Limit",
    "Rate",
    "check_limits",
]

LIMITED_FLAG: Final = "zw:limited"
"""The flag every limited job carries: a plain fetch forbids it (give it to a Node
graphile-worker's ``forbiddenFlags`` so that it leaves limited jobs to zodworker)."""

MAX_LIMITS_PER_JOB: Final = 4
MAX_LIMIT_NAME_LENGTH: Final = 128
MAX_LIMIT_KEY_LENGTH: Final = 512
_INT_MAX: Final = 2**31 - 1

KeyOf = Callable[[Any], object]
"""A key computed from the job's (validated) payload; its ``str()`` is the key."""


@dataclass(frozen=True, slots=True)
class Rate:
    """At most ``count`` starts in any window of ``per`` seconds (a sliding window)."""

    count: int
    per: float = 1.0

    def __post_init__(self) -> None:
        check_rate(self, "rate")


@dataclass(frozen=True, slots=True)
class Limit:
    """A named limit: ``concurrency`` jobs at once and/or ``rate`` starts per window, for
    each value of ``key`` (a string, a callable of the payload, or None: one key for all).
    Neither number: the keys are only served in turn (fair share)."""

    name: str
    concurrency: int | None = None
    rate: Rate | None = None
    key: str | KeyOf | None = None

    def __post_init__(self) -> None:
        check_limit(self, "limit")

    def key_for(self, payload: Any) -> str:
        """The key a job with ``payload`` is counted under."""
        key = self.key
        if key is None:
            return ""
        if isinstance(key, str):
            value: object = key
        else:
            try:
                value = key(payload)
            except Exception as exc:
                raise JobSpecError(
                    f"limits[{self.name!r}].key",
                    f"raised {exc!r} for this payload; make the key function total",
                ) from exc
        text = value if isinstance(value, str) else str(value)
        _check_text(f"limits[{self.name!r}].key", text, MAX_LIMIT_KEY_LENGTH, empty=True)
        return text

    def bound(self, payload: Any) -> Limit:
        """This limit with its key computed for ``payload`` (a string)."""
        if self.key is None or isinstance(self.key, str):
            return self
        return replace(self, key=self.key_for(payload))


def _check_text(field: str, value: object, limit: int, *, empty: bool = False) -> None:
    if not isinstance(value, str):
        raise JobSpecError(field, f"must be a string, got {type(value).__name__}")
    if not value and not empty:
        raise JobSpecError(field, "must not be empty")
    if len(value) > limit:
        raise JobSpecError(field, f"is {len(value)} characters long; the limit is {limit}")
    if "\x00" in value:
        raise JobSpecError(field, "contains a NUL character, which PostgreSQL text cannot store")


def check_rate(rate: object, field: str) -> None:
    """Raise :class:`JobSpecError` unless ``rate`` is a valid :class:`Rate`."""
    if not isinstance(rate, Rate):
        raise JobSpecError(field, f"must be a Rate(count, per=seconds), not {type(rate).__name__}")
    count, per = rate.count, rate.per
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= _INT_MAX:
        raise JobSpecError(f"{field}.count", f"is {count!r}; pass a whole number of starts >= 1")
    if (
        isinstance(per, bool)
        or not isinstance(per, (int, float))
        or not (math.isfinite(per) and per > 0)
    ):
        raise JobSpecError(f"{field}.per", f"is {per!r}; pass a number of seconds > 0")


def check_concurrency(value: object, field: str) -> None:
    """Raise :class:`JobSpecError` unless ``value`` is None or a count of jobs >= 0."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _INT_MAX:
        raise JobSpecError(
            field, f"is {value!r}; pass a whole number of jobs >= 0 (0 holds every job back)"
        )


def check_limit(limit: object, field: str) -> None:
    """Raise :class:`JobSpecError` unless ``limit`` is a valid :class:`Limit`."""
    if not isinstance(limit, Limit):
        raise JobSpecError(field, f"must be a Limit, not {type(limit).__name__}")
    _check_text(f"{field}.name", limit.name, MAX_LIMIT_NAME_LENGTH)
    check_concurrency(limit.concurrency, f"{field}.concurrency")
    if limit.rate is not None:
        check_rate(limit.rate, f"{field}.rate")
    key = limit.key
    if isinstance(key, str):
        _check_text(f"{field}.key", key, MAX_LIMIT_KEY_LENGTH, empty=True)
    elif key is not None and not callable(key):
        raise JobSpecError(
            f"{field}.key", "must be a string, a callable of the payload, or None (one key)"
        )


def check_limits(limits: object, field: str = "limits") -> tuple[Limit, ...]:
    """Validate the limits of one job and return them as a tuple: a sequence of
    :class:`Limit` with distinct names, at most :data:`MAX_LIMITS_PER_JOB`."""
    if isinstance(limits, Limit):
        limits = (limits,)
    if isinstance(limits, (str, bytes)) or not isinstance(limits, Sequence):
        raise JobSpecError(field, "must be a list of Limit")
    if len(limits) > MAX_LIMITS_PER_JOB:
        raise JobSpecError(
            field, f"has {len(limits)} limits; a job may be under {MAX_LIMITS_PER_JOB} at most"
        )
    names: set[str] = set()
    for index, limit in enumerate(limits):
        check_limit(limit, f"{field}[{index}]")
        if limit.name in names:
            raise JobSpecError(
                f"{field}[{index}].name", f"{limit.name!r} appears twice; a limit applies once"
            )
        names.add(limit.name)
    return tuple(limits)
