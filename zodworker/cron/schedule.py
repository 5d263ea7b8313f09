"""When a schedule runs: :class:`CronSchedule` matches instants and lists runs, across time
zones and daylight-saving time.

The expression's text (five fields or an alias) is read by :mod:`zodworker.cron.fields`;
this module decides which instants it stands for.

Day of month and day of week
    As graphile-worker (and Vixie cron): when *both* fields are restricted, a day matches if
    *either* matches; otherwise the restricted one (if any) decides. Like graphile-worker, a
    field is "restricted" when its set of values is not the whole range, whatever its text:
    ``*/2`` is restricted, ``1-31`` and ``0-7`` are not. (Debian cron and the ``cronsim``
    library decide by the text instead: a field starting with ``*`` forces AND.)

Time zones and daylight-saving time
    Without ``tz`` a schedule is evaluated in UTC, as graphile-worker does. With ``tz`` it is
    evaluated on the local wall-clock time of that zone, and the two DST transitions follow
    Debian cron's rule, which depends on the kind of job:

    * A *fixed-time* job (neither the minute nor the hour field starts with ``*``; e.g.
      ``30 2 * * *``, ``0 9-17 * * 1-5``, ``@daily``) runs once per matching local time. When
      clocks go forward, a local time that does not exist (02:30 on the last Sunday of March
      in Europe/Paris) runs at the instant the gap ends (03:00 local, 01:00 UTC); several
      skipped times, or a skipped time and the time right after the gap, collapse into one
      run. When clocks go back, a repeated local time (02:30 on the last Sunday of October in
      Europe/Paris) runs once, at its first occurrence (``fold=0``).
    * An *interval* job (the minute or the hour field starts with ``*``; e.g. ``0 * * * *``,
      ``*/15 * * * *``, ``@hourly``) runs at every real instant whose local time matches: an
      hourly job runs 23 times on the day clocks go forward and 25 times on the day they go
      back, so it keeps its rhythm in real time.

    In UTC both kinds behave the same. :meth:`CronSchedule.matches` and
    :meth:`CronSchedule.iter_runs` always agree: an instant matches exactly when it is a run.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ..errors import ConfigError, CrontabError
from .fields import parse_schedule, tokens_of

__all__ = ["TZ_EXPECTED", "CronSchedule", "load_zone"]

TZ_EXPECTED: Final = "an IANA time zone such as 'Europe/Paris'"
"""What a :class:`~zodworker.errors.CrontabError` about a time zone says was expected."""
_UTC_NAMES: Final = frozenset({"UTC", "Etc/UTC", "Etc/Universal", "Universal", "Zulu"})
_DAY: Final = timedelta(days=1)
_MINUTE: Final = timedelta(minutes=1)
_GIVE_UP: Final = timedelta(days=50 * 366)


def load_zone(name: str) -> tzinfo:
    """The zone called ``name``; ``ValueError`` if there is none."""
    if name in _UTC_NAMES:
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise ValueError(name) from exc


def _wall(instant: datetime, zone: tzinfo) -> datetime:
    """The naive local wall-clock time of ``instant`` in ``zone``."""
    return instant.astimezone(zone).replace(tzinfo=None)


@dataclass(frozen=True)
class CronSchedule:
    """When a cron item runs: a five-field expression (or alias) and an optional time zone.

    ``CronSchedule("*/15 9-17 * * 1-5", tz="Europe/Paris")`` parses and validates at
    construction (raising :class:`CrontabError`, columns relative to ``expression``; or
    :class:`~zodworker.errors.ConfigError` for an argument of the wrong type). Two
    schedules are equal when their (whitespace-normalised) expressions and zones are.
    """

    expression: str
    """The expression as written (whitespace normalised to single spaces), e.g. ``@daily``."""
    tz: str | None = None
    """IANA time zone the schedule is evaluated in; ``None`` is UTC (graphile-worker's)."""
    minutes: frozenset[int] = field(init=False, compare=False, repr=False)
    hours: frozenset[int] = field(init=False, compare=False, repr=False)
    days_of_month: frozenset[int] = field(init=False, compare=False, repr=False)
    months: frozenset[int] = field(init=False, compare=False, repr=False)
    days_of_week: frozenset[int] = field(init=False, compare=False, repr=False)
    """0-6, 0 is Sunday (a 7 in the expression is stored as 0)."""
    fields: tuple[str, str, str, str, str] = field(init=False, compare=False, repr=False)
    """The five field texts (an alias expanded)."""

    def __post_init__(self) -> None:
        if not isinstance(self.expression, str):
            raise ConfigError("expression", f"must be a str, not {type(self.expression).__name__}")
        tokens = tokens_of(self.expression)
        parsed = parse_schedule(tokens, len(self.expression) + 1)
        if parsed.consumed < len(tokens):
            text, column = tokens[parsed.consumed]
            raise CrontabError("the end of the schedule", text, column=column)
        if self.tz is not None:
            if not isinstance(self.tz, str):
                raise ConfigError(
                    "tz", f"must be a str (an IANA name), not {type(self.tz).__name__}"
                )
            try:
                load_zone(self.tz)
            except ValueError:
                raise CrontabError(TZ_EXPECTED, self.tz) from None
        set_ = object.__setattr__
        set_(self, "expression", parsed.expression)
        set_(self, "fields", parsed.fields)
        for name, values in zip(
            ("minutes", "hours", "days_of_month", "months", "days_of_week"),
            parsed.values,
            strict=True,
        ):
            set_(self, name, values)

    # ------------------------------------------------------------------ derived facts

    @property
    def zone(self) -> tzinfo:
        """The time zone as a ``tzinfo`` (``datetime.UTC`` when ``tz`` is ``None``)."""
        return UTC if self.tz is None else load_zone(self.tz)

    @property
    def is_interval(self) -> bool:
        """Whether DST transitions are handled as for an interval job (the minute or hour
        field starts with ``*``) rather than a fixed-time job; see the module docs."""
        return self.fields[0].startswith("*") or self.fields[1].startswith("*")

    def _day_matches(self, day: date) -> bool:
        if day.month not in self.months:
            return False
        dom_restricted = len(self.days_of_month) < 31
        dow_restricted = len(self.days_of_week) < 7
        dom = day.day in self.days_of_month
        dow = day.isoweekday() % 7 in self.days_of_week
        if dom_restricted and dow_restricted:
            return dom or dow
        if dom_restricted:
            return dom
        if dow_restricted:
            return dow
        return True

    def _wall_matches(self, wall: datetime) -> bool:
        return (
            wall.minute in self.minutes
            and wall.hour in self.hours
            and self._day_matches(wall.date())
        )

    # --------------------------------------------------------------------- matching

    def matches(self, when: datetime) -> bool:
        """Whether the schedule runs in the minute containing ``when`` (an aware datetime).

        Evaluated on the wall-clock time in :attr:`tz`, with the DST rules of the module
        docs: exactly the instants :meth:`iter_runs` yields match.
        """
        _require_aware(when, "when")
        zone = self.zone
        local = when.astimezone(zone).replace(second=0, microsecond=0)
        if zone is UTC or self.is_interval:
            return self._wall_matches(local)
        if local.fold == 0 and self._wall_matches(local):
            return True
        # The minute right after a spring-forward gap also runs the gap's skipped times.
        start = local.astimezone(UTC)
        gap_start = _wall(start - timedelta(microseconds=1), zone) + timedelta(microseconds=1)
        gap_end = local.replace(tzinfo=None)
        skipped = gap_start.replace(second=0, microsecond=0)
        if skipped < gap_start:
            skipped += _MINUTE
        while skipped < gap_end:
            if self._wall_matches(skipped):
                return True
            skipped += _MINUTE
        return False

    def next_runs(self, after: datetime, n: int) -> list[datetime]:
        """The next ``n`` runs strictly after ``after`` (aware), as aware UTC datetimes."""
        runs = self.iter_runs(after)  # checks ``after``
        if n < 0:
            raise ConfigError("n", f"must be >= 0, not {n}")
        return list(itertools.islice(runs, n))

    def iter_runs(self, after: datetime) -> Iterator[datetime]:
        """Every run strictly after ``after`` (aware), in order, as aware UTC datetimes.

        Stops (after the last representable date, or) if no run is found within 50 years.
        """
        _require_aware(after, "after")
        zone = self.zone
        if zone is UTC:
            return self._iter_runs_utc(after.astimezone(UTC))
        return self._iter_runs_zoned(after.astimezone(UTC), zone)

    def _iter_runs_utc(self, after: datetime) -> Iterator[datetime]:
        hours = sorted(self.hours)
        minutes = sorted(self.minutes)
        day = after.date()
        last_run = day
        while day - last_run < _GIVE_UP:
            if self._day_matches(day):
                for hour in hours:
                    for minute in minutes:
                        run = datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)
                        if run > after:
                            last_run = day
                            yield run
            if day == date.max:
                return
            day += _DAY

    def _iter_runs_zoned(self, after: datetime, zone: tzinfo) -> Iterator[datetime]:
        # Local days are generated in order; a run of local day D is at least
        # D 00:00 (as if UTC) - 24h, since UTC offsets are under a day. So every pending run
        # earlier than that bound for the next day is final and can be yielded in order.
        pending: list[datetime] = []
        previous: datetime | None = None
        day = max(after.astimezone(zone).date(), date.min + _DAY) - _DAY
        last_run = day
        while True:
            bound = datetime.combine(day, time(), UTC) - _DAY
            while pending and pending[0] < bound:
                run = heapq.heappop(pending)
                if run > after and run != previous:
                    previous = run
                    last_run = day
                    yield run
            if day - last_run > _GIVE_UP or day >= date.max - _DAY:
                return
            if self._day_matches(day):
                for run in self._runs_on(day, zone):
                    heapq.heappush(pending, run)
            day += _DAY

    def _runs_on(self, day: date, zone: tzinfo) -> Iterator[datetime]:
        """The runs for the matching times of local day ``day`` (maybe out of order)."""
        interval = self.is_interval
        for hour in sorted(self.hours):
            for minute in sorted(self.minutes):
                wall = datetime(day.year, day.month, day.day, hour, minute)
                first = wall.replace(tzinfo=zone).astimezone(UTC)
                second = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
                real = [u for u in sorted({first, second}) if _wall(u, zone) == wall]
                if interval:
                    yield from real
                elif real:
                    yield real[0]
                else:
                    yield _gap_end(wall, min(first, second), max(first, second), zone)


def _gap_end(wall: datetime, before: datetime, after: datetime, zone: tzinfo) -> datetime:
    """The first instant whose wall-clock time is at least ``wall`` (which does not exist),
    searched between ``before`` (wall time earlier) and ``after`` (not earlier)."""
    low, high = before, after
    while high - low > timedelta(seconds=1):
        middle = low + (high - low) // 2
        middle = middle.replace(microsecond=0)
        if _wall(middle, zone) >= wall:
            high = middle
        else:
            low = middle
    return high


def _require_aware(value: datetime, name: str) -> None:
    if not isinstance(value, datetime):
        raise ConfigError(
            name,
            "must be a timezone-aware datetime (e.g. datetime.now(UTC)), "
            f"not {type(value).__name__}",
        )
    if value.tzinfo is None or value.utcoffset() is None:
        raise ConfigError(name, f"must be timezone-aware (e.g. datetime.now(UTC)), not {value!r}")
