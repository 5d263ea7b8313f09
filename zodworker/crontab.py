"""Crontab files: parsing, formatting and matching, in graphile-worker 0.18's format.

A crontab is one item per line; blank lines and lines whose first non-blank character is
``#`` are ignored (there are no end-of-line comments)::

    # min hour dom month dow  task            ?options                     {payload}
    */15  *    *   *     *    refresh_cache
    30    2    *   *     1-5  nightly_report  ?fill=2d4h&max=3&tz=Europe/Paris
    0     9    1   *     *    send_invoices   ?id=invoices&queue=billing   {"dry_run": false}
    @daily                    vacuum          ?jobKey=vacuum&jobKeyMode=preserve_run_at

Schedule
    Five fields: minute (0-59), hour (0-23), day of month (1-31), month (1-12) and day of
    week (0-7; 0 and 7 are both Sunday). Each is a comma-separated list of ``n``, ``*``,
    ``*/n`` (every n-th value from the field's minimum), ``a-b`` (a < b, as graphile-worker
    requires) or ``a-b/n`` (every n-th value from a to b). Instead of five fields, an alias:
    ``@yearly``/``@annually`` (``0 0 1 1 *``), ``@monthly`` (``0 0 1 * *``), ``@weekly``
    (``0 0 * * 0``), ``@daily``/``@midnight`` (``0 0 * * *``) or ``@hourly`` (``0 * * * *``).

Day of month and day of week
    As graphile-worker (and Vixie cron): when *both* fields are restricted, a day matches if
    *either* matches; otherwise the restricted one (if any) decides. Like graphile-worker, a
    field is "restricted" when its set of values is not the whole range, whatever its text:
    ``*/2`` is restricted, ``1-31`` and ``0-7`` are not. (Debian cron and the ``cronsim``
    library decide by the text instead: a field starting with ``*`` forces AND.) A schedule
    that can never run (``0 0 31 2 *``) is rejected; graphile-worker accepts it silently.

Options
    After ``?``, ``&``-separated, percent-encoded (``+`` is a space) ``name=value`` pairs,
    each at most once: ``id`` (the item's identifier, unique in the crontab; default: the task
    identifier), ``fill`` (backfill window, a time phrase like ``2d4h`` of s/m/h/d/w units;
    default 0), ``max`` (max attempts, 1-32767), ``queue`` (queue name), ``priority``
    (-32768-32767), ``jobKey``, ``jobKeyMode`` (``replace``, the default when ``jobKey`` is
    given, or ``preserve_run_at``; only with ``jobKey``) and, beyond graphile-worker, ``tz``
    (an IANA time zone such as ``Europe/Paris``; default UTC).

Payload
    An optional JSON object after the options. graphile-worker reads JSON5; zodworker reads
    strict JSON (quoted keys, no trailing commas or comments), without duplicate keys.

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

Differences from graphile-worker
    Extensions (a line using one is rejected by graphile-worker): aliases, ``a-b/n`` and
    ``tz``. Stricter (rejected here, accepted there): ``max=0`` and values beyond the
    database's smallint columns, an empty ``jobKey``, ``jobKeyMode`` without ``jobKey``,
    empty option segments (``?a=1&&b=2``), schedules that never run, and JSON5-only
    payloads.

The API: :func:`parse_crontab` and :func:`parse_cron_line` return :class:`CronItem` objects
(each with a :class:`CronSchedule`), :func:`format_cron_item` writes an item back (the round
trip ``parse_cron_line(format_cron_item(item)) == item`` holds), and every problem is a
:class:`CrontabError` naming the line, the 1-based column and what was expected there.
"""

from __future__ import annotations

import heapq
import itertools
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any, Final, Literal, NamedTuple, cast, get_args
from urllib.parse import quote_plus, unquote_plus
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .errors import CrontabError

__all__ = [
    "CronItem",
    "CronSchedule",
    "CrontabError",
    "JobKeyMode",
    "format_cron_item",
    "format_time_phrase",
    "parse_cron_line",
    "parse_crontab",
    "parse_time_phrase",
]

JobKeyMode = Literal["replace", "preserve_run_at"]
"""The job key modes a crontab may name (graphile-worker's crontab does not allow
``unsafe_dedupe``)."""

_JOB_KEY_MODES: Final[tuple[str, ...]] = get_args(JobKeyMode)


# --------------------------------------------------------------------------- time phrases

_PERIODS: Final = {"w": 7 * 86400, "d": 86400, "h": 3600, "m": 60, "s": 1}
_PHRASE_PART: Final = re.compile(r"([0-9]+)([smhdw])")
_PHRASE_EXPECTED: Final = "a time phrase such as '2d4h' (numbers, each followed by s, m, h, d or w)"


def parse_time_phrase(phrase: str) -> int:
    """The number of seconds in a time phrase such as ``"2d4h"`` or ``"1w30m"``.

    A phrase is one or more ``<number><unit>`` parts, units ``s``, ``m``, ``h``, ``d`` and
    ``w`` (7 days), numbers of at most 9 digits. Raises :class:`CrontabError` whose
    ``column`` is the position in ``phrase`` of the first part that is not understood.
    """
    if phrase == "":
        raise CrontabError(_PHRASE_EXPECTED, "")
    seconds = 0
    position = 0
    while position < len(phrase):
        part = _PHRASE_PART.match(phrase, position)
        if part is None:
            raise CrontabError(_PHRASE_EXPECTED, phrase[position:], column=position + 1)
        if len(part.group(1).lstrip("0")) > 9:
            expected = f"{_PHRASE_EXPECTED}, at most 9 digits per number"
            raise CrontabError(expected, phrase[position:], column=position + 1)
        seconds += int(part.group(1)) * _PERIODS[part.group(2)]
        position = part.end()
    return seconds


def format_time_phrase(seconds: int) -> str:
    """The shortest time phrase for ``seconds`` (``187200`` gives ``"2d4h"``; 0 gives ``"0s"``).

    ``parse_time_phrase(format_time_phrase(n)) == n`` for every ``n >= 0``.
    """
    if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds < 0:
        raise ValueError(f"seconds must be an int >= 0, not {seconds!r}")
    if seconds == 0:
        return "0s"
    parts = []
    for unit, size in _PERIODS.items():
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


# ------------------------------------------------------------------------------ schedules


class _FieldSpec(NamedTuple):
    noun: str
    low: int
    high: int  # the highest value accepted in the text (7 for the day of week)
    wraps: bool  # high is another name for low (day of week 7 = 0 = Sunday)

    @property
    def last(self) -> int:
        """The highest value after wrapping."""
        return self.high - 1 if self.wraps else self.high

    @property
    def expected(self) -> str:
        return f"{self.noun}, '*', '*/n', 'a-b', 'a-b/n' or a list"


_FIELDS: Final = (
    _FieldSpec("a minute (0-59)", 0, 59, False),
    _FieldSpec("an hour (0-23)", 0, 23, False),
    _FieldSpec("a day of month (1-31)", 1, 31, False),
    _FieldSpec("a month (1-12)", 1, 12, False),
    _FieldSpec("a day of week (0-7, Sunday is 0 or 7)", 0, 7, True),
)
_ALIASES: Final = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_SCHEDULE_EXPECTED: Final = (
    "a schedule: five fields 'minute hour day-of-month month day-of-week' or one of "
    + ", ".join(_ALIASES)
)
_PART: Final = re.compile(
    r"(?P<star>\*)(?:/(?P<star_step>[0-9]+))?"
    r"|(?P<a>[0-9]+)(?:-(?P<b>[0-9]+)(?:/(?P<range_step>[0-9]+))?)?"
)
# The longest month of each month, February counting its leap day.
_DAYS_IN_MONTH: Final = (0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_UTC_NAMES: Final = frozenset({"UTC", "Etc/UTC", "Etc/Universal", "Universal", "Zulu"})


def _bounded_int(digits: str) -> int:
    """``int(digits)``, except that numbers of more than 9 digits all read as 10**9 (no
    limit in the format is that high, and Python refuses to read very long numbers)."""
    return int(digits) if len(digits.lstrip("0")) <= 9 else 10**9


def _tokens(text: str) -> list[tuple[str, int]]:
    """The whitespace-separated tokens of ``text`` with their 1-based columns."""
    return [(found.group(), found.start() + 1) for found in re.finditer(r"\S+", text)]


def _parse_field(spec: _FieldSpec, text: str, column: int) -> frozenset[int]:
    """The values a field allows; errors point at the offending list element or number."""
    values: set[int] = set()

    def number(digits: str, at: int) -> int:
        value = _bounded_int(digits)
        if not spec.low <= value <= spec.high:
            raise CrontabError(spec.expected, digits, column=at)
        return spec.low if spec.wraps and value == spec.high else value

    def step(digits: str | None, at: int) -> int:
        if digits is None:
            return 1
        if _bounded_int(digits) < 1:
            raise CrontabError("a step of at least 1 (as in '*/5')", digits, column=at)
        return _bounded_int(digits)

    at = column
    for part in text.split(","):
        found = _PART.fullmatch(part)
        if found is None:
            raise CrontabError(spec.expected, part, column=at)
        if found.group("star"):
            values.update(range(spec.low, spec.last + 1, step(found["star_step"], at + 2)))
        else:
            low = number(found["a"], at)
            if found["b"] is None:
                values.add(low)
            else:
                b_at = at + len(found["a"]) + 1
                high_digits = found["b"]
                number(high_digits, b_at)  # range check only: 7 stays 7 in '5-7'
                high = _bounded_int(high_digits)
                if high <= _bounded_int(found["a"]):
                    raise CrontabError("a range 'a-b' with a < b", part, column=at)
                stride = step(found["range_step"], b_at + len(high_digits) + 1)
                for value in range(_bounded_int(found["a"]), high + 1, stride):
                    values.add(spec.low if spec.wraps and value == spec.high else value)
        at += len(part) + 1
    return frozenset(values)


class _ParsedSchedule(NamedTuple):
    expression: str
    fields: tuple[str, str, str, str, str]
    values: tuple[frozenset[int], ...]
    consumed: int  # how many tokens the schedule took


def _parse_schedule(tokens: list[tuple[str, int]], end_column: int) -> _ParsedSchedule:
    """Parse the schedule at the start of ``tokens`` (columns as in the tokens)."""
    if not tokens:
        raise CrontabError(_SCHEDULE_EXPECTED, None, column=end_column)
    first, first_column = tokens[0]
    if first.startswith("@"):
        if first not in _ALIASES:
            raise CrontabError(f"one of {', '.join(_ALIASES)}", first, column=first_column)
        texts = _ALIASES[first].split()
        values = tuple(
            _parse_field(spec, text, 1) for spec, text in zip(_FIELDS, texts, strict=True)
        )
        fields = cast(tuple[str, str, str, str, str], tuple(texts))
        return _ParsedSchedule(first, fields, values, 1)
    parsed: list[frozenset[int]] = []
    for index, spec in enumerate(_FIELDS):
        if index >= len(tokens):
            raise CrontabError(spec.expected, None, column=end_column)
        text, column = tokens[index]
        if index == 0 and _PART.match(text) is None:
            raise CrontabError(_SCHEDULE_EXPECTED, text, column=column)
        parsed.append(_parse_field(spec, text, column))
    _, _, doms, months, dows = parsed
    if (
        len(doms) < 31
        and len(dows) == 7
        and not any(min(doms) <= _DAYS_IN_MONTH[m] for m in months)
    ):
        text, column = tokens[2]
        raise CrontabError(
            "a day of month that exists in one of the chosen months (else it never runs)",
            text,
            column=column,
        )
    texts = [text for text, _ in tokens[:5]]
    fields = cast(tuple[str, str, str, str, str], tuple(texts))
    return _ParsedSchedule(" ".join(texts), fields, tuple(parsed), 5)


def _load_zone(name: str) -> tzinfo:
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


_DAY: Final = timedelta(days=1)
_MINUTE: Final = timedelta(minutes=1)
_GIVE_UP: Final = timedelta(days=50 * 366)


@dataclass(frozen=True)
class CronSchedule:
    """When a cron item runs: a five-field expression (or alias) and an optional time zone.

    ``CronSchedule("*/15 9-17 * * 1-5", tz="Europe/Paris")`` parses and validates at
    construction (raising :class:`CrontabError`, columns relative to ``expression``). Two
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
            raise TypeError(f"expression must be a str, not {type(self.expression).__name__}")
        tokens = _tokens(self.expression)
        parsed = _parse_schedule(tokens, len(self.expression) + 1)
        if parsed.consumed < len(tokens):
            text, column = tokens[parsed.consumed]
            raise CrontabError("the end of the schedule", text, column=column)
        if self.tz is not None:
            if not isinstance(self.tz, str):
                raise TypeError(f"tz must be a str (an IANA name), not {type(self.tz).__name__}")
            try:
                _load_zone(self.tz)
            except ValueError:
                raise CrontabError(_TZ_EXPECTED, self.tz) from None
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
        return UTC if self.tz is None else _load_zone(self.tz)

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
            raise ValueError(f"n must be >= 0, not {n}")
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


_TZ_EXPECTED: Final = "an IANA time zone such as 'Europe/Paris'"


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
        raise TypeError(f"{name} must be a datetime, not {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware (e.g. datetime.now(UTC)), not {value!r}")


# ---------------------------------------------------------------------------- cron items

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
    (``ValueError`` naming it). The payload is not part of the hash.
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
            raise TypeError("schedule must be a CronSchedule")
        if not isinstance(self.task, str) or not _TASK.fullmatch(self.task):
            raise ValueError(f"task: expected {_TASK_EXPECTED}, got {self.task!r}")
        if self.identifier == "":
            object.__setattr__(self, "identifier", self.task)
        elif self.identifier != self.task and not _ID.fullmatch(self.identifier):
            raise ValueError(f"identifier: expected {_ID_EXPECTED}, got {self.identifier!r}")
        if not isinstance(self.payload, dict) or not _json_roundtrips(self.payload):
            raise ValueError("payload: expected a dict that JSON encodes and decodes unchanged")
        if not _small_int(self.fill, 0, _MAX_FILL):
            raise ValueError(f"fill: expected a number of seconds >= 0, got {self.fill!r}")
        if self.max_attempts is not None and not _small_int(self.max_attempts, 1, 32767):
            raise ValueError(f"max_attempts: expected {_MAX_EXPECTED}, got {self.max_attempts!r}")
        if self.queue_name is not None and not _QUEUE.fullmatch(self.queue_name):
            raise ValueError(f"queue_name: expected {_QUEUE_EXPECTED}, got {self.queue_name!r}")
        if self.priority is not None and not _small_int(self.priority, -32768, 32767):
            raise ValueError(f"priority: expected {_PRIORITY_EXPECTED}, got {self.priority!r}")
        if self.job_key is None:
            if self.job_key_mode is not None:
                raise ValueError("job_key_mode: only meaningful with a job_key")
        else:
            if not isinstance(self.job_key, str) or not _valid_job_key(self.job_key):
                raise ValueError(f"job_key: expected {_JOB_KEY_EXPECTED}, got {self.job_key!r}")
            if self.job_key_mode is None:
                object.__setattr__(self, "job_key_mode", "replace")
            elif self.job_key_mode not in _JOB_KEY_MODES:
                raise ValueError(
                    f"job_key_mode: expected {_MODE_EXPECTED}, got {self.job_key_mode!r}"
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


# ------------------------------------------------------------------------------ parsing

_OPTION_NAMES: Final = ("id", "fill", "max", "queue", "priority", "jobKey", "jobKeyMode", "tz")


class _Invalid(Exception):
    """An option value is invalid; the argument is what was expected."""


def _option_value(name: str, value: str) -> object:
    """The parsed value of option ``name``; raises :class:`_Invalid` or CrontabError."""
    if name == "id":
        if not _ID.fullmatch(value):
            raise _Invalid(_ID_EXPECTED)
        return value
    if name == "fill":
        seconds = parse_time_phrase(value)
        if seconds > _MAX_FILL:
            raise _Invalid(f"{_PHRASE_EXPECTED}, at most 999999999 days")
        return seconds
    if name in ("max", "priority"):
        low, high, expected = (
            (1, 32767, _MAX_EXPECTED) if name == "max" else (-32768, 32767, _PRIORITY_EXPECTED)
        )
        pattern = r"[0-9]+" if name == "max" else r"-?[0-9]+"
        if not re.fullmatch(pattern, value):
            raise _Invalid(expected)
        number = -_bounded_int(value[1:]) if value[0] == "-" else _bounded_int(value)
        if not low <= number <= high:
            raise _Invalid(expected)
        return number
    if name == "queue":
        if not _QUEUE.fullmatch(value):
            raise _Invalid(_QUEUE_EXPECTED)
        return value
    if name == "jobKey":
        if not _valid_job_key(value):
            raise _Invalid(_JOB_KEY_EXPECTED)
        return value
    if name == "jobKeyMode":
        if value not in _JOB_KEY_MODES:
            raise _Invalid(_MODE_EXPECTED)
        return value
    try:
        _load_zone(value)
    except ValueError:
        raise _Invalid(_TZ_EXPECTED) from None
    return value


def _parse_options(text: str, column: int) -> tuple[dict[str, object], dict[str, int]]:
    """Options text (after the ``?``) starting at ``column``: values and value columns."""
    values: dict[str, object] = {}
    columns: dict[str, int] = {}  # where each option's name starts
    at = column
    for segment in text.split("&"):
        name, equals, raw = segment.partition("=")
        if name not in _OPTION_NAMES:
            expected = "an option (" + ", ".join(_OPTION_NAMES) + ") as 'name=value'"
            raise CrontabError(expected, name, column=at)
        if name in values:
            raise CrontabError(f"each option at most once ('{name}' is repeated)", name, column=at)
        value_at = at + len(name) + 1
        if not equals:
            raise CrontabError(f"'=' and a value after '{name}'", None, column=value_at - 1)
        try:
            decoded = unquote_plus(raw, errors="strict")
        except UnicodeDecodeError:
            raise CrontabError("percent-encoded UTF-8", raw, column=value_at) from None
        try:
            values[name] = _option_value(name, decoded)
        except _Invalid as exc:
            raise CrontabError(str(exc), raw, column=value_at) from None
        except CrontabError as exc:  # a time phrase, located within the value
            if decoded != raw:
                raise CrontabError(exc.expected, raw, column=value_at) from None
            raise exc._moved(line=1, column_offset=value_at - 1) from None
        columns[name] = at
        at += len(segment) + 1
    if "jobKeyMode" in values and "jobKey" not in values:
        raise CrontabError(
            "'jobKey' alongside 'jobKeyMode'", "jobKeyMode", column=columns["jobKeyMode"]
        )
    return values, columns


def _reject_constant(constant: str) -> object:
    raise ValueError(f"{constant} is not valid JSON")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def _parse_payload(text: str, column: int) -> dict[str, Any]:
    try:
        payload = json.loads(
            text, object_pairs_hook=_no_duplicates, parse_constant=_reject_constant
        )
    except json.JSONDecodeError as exc:
        raise CrontabError(
            f"a JSON object payload (strict JSON: {exc.msg})",
            text[exc.pos : exc.pos + 20] if exc.pos < len(text) else None,
            column=column + exc.pos,
        ) from None
    except (ValueError, RecursionError) as exc:
        raise CrontabError(f"a JSON object payload ({exc})", text, column=column) from None
    if not _json_roundtrips(payload):  # e.g. 1e400, which Python reads as infinity
        raise CrontabError("a JSON object payload with finite numbers", text, column=column)
    return cast(dict[str, Any], payload)


def _parse_line(line: str, line_number: int) -> tuple[CronItem, int]:
    """The item on ``line`` and the column where its identifier comes from."""
    try:
        tokens = _tokens(line)
        end = len(line.rstrip()) + 1
        schedule = _parse_schedule(tokens, end)
        rest = tokens[schedule.consumed :]
        if not rest:
            raise CrontabError(_TASK_EXPECTED, None, column=end)
        task, task_column = rest[0]
        if not _TASK.fullmatch(task):
            raise CrontabError(_TASK_EXPECTED, task, column=task_column)
        options: dict[str, object] = {}
        id_column = task_column
        rest = rest[1:]
        if rest and rest[0][0].startswith("?"):
            text, column = rest[0]
            options, columns = _parse_options(text[1:], column + 1)
            id_column = columns["id"] + 3 if "id" in columns else task_column
            rest = rest[1:]
        payload: dict[str, Any] = {}
        if rest:
            text, column = rest[0]
            if not text.startswith("{"):
                expected = "options ('?name=value&...'), a JSON object ('{...}') or the line's end"
                if text.startswith("#"):
                    expected += " (comments go on lines of their own)"
                elif text.startswith("?"):
                    expected = "a JSON object ('{...}') or the line's end (options come first)"
                raise CrontabError(expected, text, column=column)
            payload = _parse_payload(line[column - 1 :].rstrip(), column)
        tz = cast(str | None, options.get("tz"))
        item = CronItem(
            schedule=CronSchedule(schedule.expression, tz=tz),
            task=task,
            identifier=cast(str, options.get("id", "")),
            payload=payload,
            fill=cast(int, options.get("fill", 0)),
            max_attempts=cast(int | None, options.get("max")),
            queue_name=cast(str | None, options.get("queue")),
            priority=cast(int | None, options.get("priority")),
            job_key=cast(str | None, options.get("jobKey")),
            job_key_mode=cast(JobKeyMode | None, options.get("jobKeyMode")),
        )
    except CrontabError as exc:
        raise exc._moved(line=line_number, column_offset=0) from None
    return item, id_column


def parse_cron_line(line: str, *, line_number: int = 1) -> CronItem:
    """The :class:`CronItem` on one crontab line (see the module docs for the format).

    Raises :class:`CrontabError` with ``line`` set to ``line_number`` and ``column`` the
    1-based column in ``line`` of the offending token.
    """
    return _parse_line(line, line_number)[0]


def parse_crontab(text: str) -> list[CronItem]:
    """The items of a crontab, in order; blank lines and ``#`` comment lines are skipped.

    Raises :class:`CrontabError` for the first invalid line, or for the second of two items
    with the same identifier (pointing at its ``id`` option, or its task when it has none).
    """
    items: list[CronItem] = []
    first_line: dict[str, int] = {}
    for number, line in enumerate(re.split(r"\r?\n", text), start=1):
        stripped = line.strip()
        if stripped == "" or stripped.startswith("#"):
            continue
        item, id_column = _parse_line(line, number)
        if item.identifier in first_line:
            raise CrontabError(
                f"an identifier not used before (line {first_line[item.identifier]} uses it; "
                "give each item its own '?id=...')",
                item.identifier,
                line=number,
                column=id_column,
            )
        first_line[item.identifier] = number
        items.append(item)
    return items


_OPTION_SAFE: Final = ":/@,;*$!'()"


def format_cron_item(item: CronItem) -> str:
    """``item`` as a crontab line, in a canonical form that parses back to an equal item.

    The schedule is written as given; options in the order ``id fill max queue priority
    jobKey jobKeyMode tz``, defaults omitted, values percent-encoded when needed; the payload
    as compact ASCII JSON (omitted when empty).
    """
    options: list[tuple[str, str]] = []
    if item.identifier != item.task:
        options.append(("id", item.identifier))
    if item.fill:
        options.append(("fill", format_time_phrase(item.fill)))
    if item.max_attempts is not None:
        options.append(("max", str(item.max_attempts)))
    if item.queue_name is not None:
        options.append(("queue", item.queue_name))
    if item.priority is not None:
        options.append(("priority", str(item.priority)))
    if item.job_key is not None:
        options.append(("jobKey", item.job_key))
        if item.job_key_mode not in (None, "replace"):
            options.append(("jobKeyMode", str(item.job_key_mode)))
    if item.schedule.tz is not None:
        options.append(("tz", item.schedule.tz))
    parts = [item.schedule.expression, item.task]
    if options:
        parts.append(
            "?"
            + "&".join(f"{name}={quote_plus(value, safe=_OPTION_SAFE)}" for name, value in options)
        )
    if item.payload:
        parts.append(json.dumps(item.payload, separators=(",", ":"), allow_nan=False))
    return " ".join(parts)
