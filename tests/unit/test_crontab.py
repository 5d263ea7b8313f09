"""Crontab parsing, formatting and matching (zodworker.cron).

Property tests check matching against an independent oracle, ``cronsim`` (a test-only
dependency). cronsim follows Debian cron for day of month vs day of week: AND when either
field's *text* starts with ``*``, else OR. graphile-worker (and zodworker) decide by the
*values*: OR when both fields are restricted (neither is the whole range), else the
restricted one decides. The two agree unless a restricted field starts with ``*`` (``*/2``)
or an unrestricted one does not (``1-31``, ``0-7``); the generated expressions are
constrained to where they agree (:func:`cronsim_agrees`), and the disagreements are pinned by
:func:`test_day_rule_is_graphile_workers_not_cronsims`.

For time zones, cronsim emulates Debian cron's DST handling, which zodworker follows too, so
zoned schedules are compared as well, around real transitions. cronsim mishandles two rare
cases of interval jobs (minute or hour field starting with ``*``), left out of the comparison:
at Lord Howe Island's 30-minute fall-back it skips the real 02:00-02:29 that follows, and
for the day Samoa skipped (Pacific/Apia, 2011-12-30) it yields that day's nonexistent
midnight (really Saturday 00:00) for a Friday-only job.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any, cast
from zoneinfo import ZoneInfo

import pytest
from cronsim import CronSim, CronSimError
from hypothesis import assume, event, given, settings
from hypothesis import strategies as st

from zodworker.cron import (
    CronItem,
    CronSchedule,
    format_cron_item,
    format_time_phrase,
    parse_cron_line,
    parse_crontab,
    parse_time_phrase,
)
from zodworker.cron.watch import read_crontab
from zodworker.errors import CrontabError, ZodworkerError

# ------------------------------------------------------------------------------ strategies

# (lowest, highest value accepted in the text) per field; 7 is Sunday in the day of week.
FIELD_RANGES = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 7)]


def field_element(low: int, high: int) -> st.SearchStrategy[str]:
    """One list element: n, *, */n, a-b or a-b/n (a < b, as graphile-worker requires)."""
    ranges = st.integers(low, high - 1).flatmap(
        lambda a: st.tuples(st.just(a), st.integers(a + 1, high))
    )
    steps = st.integers(1, high - low + 2)
    return st.one_of(
        st.integers(low, high).map(str),
        st.just("*"),
        steps.map(lambda n: f"*/{n}"),
        ranges.map(lambda r: f"{r[0]}-{r[1]}"),
        st.tuples(ranges, steps).map(lambda t: f"{t[0][0]}-{t[0][1]}/{t[1]}"),
    )


def field_text(low: int, high: int) -> st.SearchStrategy[str]:
    return st.lists(field_element(low, high), min_size=1, max_size=3).map(",".join)


expressions = st.tuples(*(field_text(low, high) for low, high in FIELD_RANGES)).map(" ".join)
ALIASES = ["@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"]


def cronsim_agrees(schedule: CronSchedule) -> bool:
    """Whether cronsim's day-of-month/day-of-week rule gives the same days as ours."""
    dom_restricted = len(schedule.days_of_month) < 31
    dow_restricted = len(schedule.days_of_week) < 7
    if not dom_restricted and not dow_restricted:
        return True
    cronsim_and = schedule.fields[2].startswith("*") or schedule.fields[4].startswith("*")
    return cronsim_and != (dom_restricted and dow_restricted)


def schedule_or_reject(expression: str, tz: str | None = None) -> CronSchedule:
    try:
        return CronSchedule(expression, tz=tz)
    except CrontabError as exc:
        error = exc
    assert "never runs" in error.expected  # the only valid-looking schedules rejected
    assume(False)
    raise AssertionError("unreachable")


utc_instants = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)


def oracle_runs(expression: str, after: datetime, n: int, zone: Any = UTC) -> list[datetime]:
    # Via UTC: a local time made by arithmetic may not exist, and cronsim would start there.
    runs = CronSim(expression, after.astimezone(UTC).astimezone(zone))
    return [next(runs).astimezone(UTC) for _ in range(n)]


def oracle_matches(expression: str, when: datetime) -> bool:
    minute = when.astimezone(UTC).replace(second=0, microsecond=0)
    return oracle_runs(expression, minute - timedelta(seconds=1), 1)[0] == minute


# ----------------------------------------------------------------- properties: the oracle


@settings(max_examples=300, deadline=None)
@given(expressions, utc_instants, st.lists(utc_instants, min_size=1, max_size=5))
def test_utc_schedules_agree_with_cronsim(
    expression: str, after: datetime, probes: list[datetime]
) -> None:
    error: CrontabError | None = None
    try:
        item = parse_cron_line(f"{expression} task")
    except CrontabError as exc:
        error = exc
    if error is not None:
        # Only schedules that can never run are rejected; cronsim rejects them too (in the
        # region where the day rules agree, it ANDs the days).
        assert "never runs" in error.expected
        with pytest.raises(CronSimError):
            CronSim(expression, after)
        return
    assume(cronsim_agrees(item.schedule))
    dom_restricted = len(item.schedule.days_of_month) < 31
    dow_restricted = len(item.schedule.days_of_week) < 7
    event(f"days restricted by dom={dom_restricted} dow={dow_restricted}")
    runs = item.next_runs(after, 5)
    assert runs == oracle_runs(expression, after, 5)
    assert all(run.tzinfo is UTC for run in runs)
    for when in [*probes, *runs, *(run - timedelta(minutes=1) for run in runs)]:
        assert item.matches(when) == oracle_matches(expression, when), when
    # Any aware `after` works, not only UTC ones.
    assert item.next_runs(after.astimezone(timezone(timedelta(hours=-7))), 5) == runs


# Days with a DST transition (local dates), where the zoned schedules are compared.
TRANSITIONS = [
    ("Europe/Paris", date(2024, 3, 31)),
    ("Europe/Paris", date(2024, 10, 27)),
    ("America/New_York", date(2024, 3, 10)),
    ("America/New_York", date(2024, 11, 3)),
    ("America/Sao_Paulo", date(2018, 11, 4)),  # forward at midnight: no 00:00-00:59
    ("America/Sao_Paulo", date(2019, 2, 16)),  # back at midnight: 23:00-23:59 twice
    ("Australia/Sydney", date(2024, 4, 7)),
    ("Australia/Sydney", date(2024, 10, 6)),
    ("Pacific/Apia", date(2011, 12, 29)),  # 2011-12-30 was skipped entirely
    ("Asia/Kolkata", date(2024, 6, 1)),  # no DST at all
]


@settings(max_examples=150, deadline=None)
@given(
    st.one_of(expressions, st.sampled_from(ALIASES)),
    st.sampled_from(TRANSITIONS),
    st.integers(0, 3 * 24 * 60) | st.integers(20 * 60, 24 * 60),  # the latter: just before
)
def test_zoned_schedules_agree_with_cronsim(
    expression: str, transition: tuple[str, date], minutes_before: int
) -> None:
    tz, day = transition
    zone = ZoneInfo(tz)
    schedule = schedule_or_reject(expression, tz)
    assume(cronsim_agrees(schedule))
    # cronsim yields the nonexistent local midnight of a skipped day for interval jobs.
    assume(tz != "Pacific/Apia" or not schedule.is_interval)
    after = datetime.combine(day + timedelta(days=1), time(), zone) - timedelta(
        minutes=minutes_before
    )
    oracle_expression = " ".join(schedule.fields)  # cronsim has no aliases
    event("interval job" if schedule.is_interval else "fixed-time job")
    assert schedule.next_runs(after, 20) == oracle_runs(oracle_expression, after, 20, zone)


def local_day_bounds(zone: ZoneInfo, day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time(), zone).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=1), time(), zone).astimezone(UTC)
    return start, end


# Transitions cronsim cannot be compared on, for the brute-force model below.
MORE_TRANSITIONS = [
    *TRANSITIONS,
    ("Australia/Lord_Howe", date(2024, 4, 7)),  # back 30 minutes: 01:30-01:59 twice
    ("Australia/Lord_Howe", date(2024, 10, 6)),  # forward 30 minutes: no 02:00-02:29
    ("Pacific/Apia", date(2011, 12, 30)),  # the skipped day itself
]


def day_rule(schedule: CronSchedule, day: date) -> bool:
    """graphile-worker's rule, restated: OR when both day fields are restricted."""
    dom_restricted = len(schedule.days_of_month) < 31
    dow_restricted = len(schedule.days_of_week) < 7
    dom = day.day in schedule.days_of_month
    dow = day.isoweekday() % 7 in schedule.days_of_week
    if dom_restricted and dow_restricted:
        return dom or dow
    return (dom or not dom_restricted) and (dow or not dow_restricted)


def brute_force_runs(schedule: CronSchedule, start: datetime, end: datetime) -> list[datetime]:
    """The runs in [start, end) by the module docs' DST rules, minute by minute.

    Interval jobs: every minute whose wall-clock time matches. Fixed-time jobs: for every
    matching wall-clock time L, the first instant whose wall-clock time is at least L (so a
    repeated time runs at its first occurrence and a skipped one when the gap ends).
    Runs in the first and last day of the window are unreliable and must be ignored.
    """
    zone = ZoneInfo(cast(str, schedule.tz))
    minutes = int((end - start) / timedelta(minutes=1))
    grid = [start + timedelta(minutes=k) for k in range(minutes)]
    walls = [u.astimezone(zone).replace(tzinfo=None) for u in grid]

    def wall_matches(wall: datetime) -> bool:
        return (
            wall.minute in schedule.minutes
            and wall.hour in schedule.hours
            and wall.month in schedule.months
            and day_rule(schedule, wall.date())
        )

    if schedule.is_interval:
        return [u for u, wall in zip(grid, walls, strict=True) if wall_matches(wall)]
    highest = list(itertools.accumulate(walls, max))  # non-decreasing: bisect works
    runs = set()
    wall = min(walls)
    while wall <= highest[-1]:
        if wall_matches(wall):
            index = bisect.bisect_left(highest, wall)
            if index < len(grid):
                runs.add(grid[index])
        wall += timedelta(minutes=1)
    return sorted(runs)


@settings(max_examples=60, deadline=None)
@given(st.one_of(expressions, st.sampled_from(ALIASES)), st.sampled_from(MORE_TRANSITIONS))
def test_zoned_runs_follow_the_documented_dst_rules(
    expression: str, transition: tuple[str, date]
) -> None:
    tz, day = transition
    schedule = schedule_or_reject(expression, tz)
    start, end = local_day_bounds(ZoneInfo(tz), day)
    start, end = start - timedelta(days=1), end + timedelta(days=1)
    inner_start, inner_end = start + timedelta(days=1), end - timedelta(days=1)
    expected = [r for r in brute_force_runs(schedule, start, end) if inner_start <= r < inner_end]
    runs = list(
        itertools.takewhile(
            lambda r: r < inner_end, schedule.iter_runs(inner_start - timedelta(microseconds=1))
        )
    )
    assert runs == expected
    # ... and matches() says yes exactly at those instants.
    expected_set = set(expected)
    minute = inner_start
    while minute < inner_end:
        assert schedule.matches(minute) == (minute in expected_set), minute
        minute += timedelta(minutes=1)


# ------------------------------------------------------------- properties: the round trip

TASKS = st.from_regex(r"[_a-zA-Z][_a-zA-Z0-9:/-]{0,20}", fullmatch=True)
IDENTIFIERS = st.from_regex(r"[_a-zA-Z][-_a-zA-Z0-9]{0,20}", fullmatch=True)
QUEUES = st.from_regex(r"[-a-zA-Z0-9_:]{1,20}", fullmatch=True)
JOB_KEYS = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1)
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**64), 2**64)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
ZONES = [None, "UTC", "Europe/Paris", "America/New_York", "Asia/Kolkata"]


@st.composite
def cron_items(draw: st.DrawFn) -> CronItem:
    expression = draw(st.one_of(expressions, st.sampled_from(ALIASES)))
    schedule = schedule_or_reject(expression, draw(st.sampled_from(ZONES)))
    job_key = draw(st.none() | JOB_KEYS)
    return CronItem(
        schedule=schedule,
        task=draw(TASKS),
        identifier=draw(st.just("") | IDENTIFIERS),
        payload=draw(st.dictionaries(st.text(), JSON_VALUES, max_size=4)),
        fill=draw(st.sampled_from([0, 0, 60]) | st.integers(0, 10**9)),
        max_attempts=draw(st.none() | st.integers(1, 32767)),
        queue_name=draw(st.none() | QUEUES),
        priority=draw(st.none() | st.integers(-32768, 32767)),
        job_key=job_key,
        job_key_mode=draw(st.sampled_from([None, "replace", "preserve_run_at"]))
        if job_key is not None
        else None,
    )


@settings(max_examples=300, deadline=None)
@given(cron_items())
def test_format_round_trips(item: CronItem) -> None:
    line = format_cron_item(item)
    assert line.isascii() and "\n" not in line
    assert parse_cron_line(line) == item
    assert parse_cron_line(line).payload == item.payload
    assert parse_crontab(f"# generated\n\n  {line}  \r\n") == [item]


@given(st.integers(0, 10**12))
def test_time_phrases_round_trip(seconds: int) -> None:
    assert parse_time_phrase(format_time_phrase(seconds)) == seconds


# -------------------------------------------------------------------------- the format


def test_a_minimal_line_takes_graphile_workers_defaults() -> None:
    item = parse_cron_line("0 4 * * * send_digest")
    assert item == CronItem(CronSchedule("0 4 * * *"), "send_digest")
    assert item.identifier == "send_digest"  # the task identifier, as upstream
    assert (item.fill, item.max_attempts, item.queue_name, item.priority) == (0, None, None, None)
    assert (item.job_key, item.job_key_mode, item.tz, item.payload) == (None, None, None, {})
    assert item.schedule.minutes == {0} and item.schedule.hours == {4}
    assert len(item.schedule.days_of_month) == 31 and len(item.schedule.days_of_week) == 7


def test_every_option() -> None:
    item = parse_cron_line(
        "*/15\t9-17 * * 1-5   billing:invoice/send "
        "?id=invoices&fill=1w2d&max=5&queue=billing:eu&priority=-3&jobKey=inv%2F42+eu"
        "&jobKeyMode=preserve_run_at&tz=Europe/Paris "
        '{"dry_run": false, "to": ["a@example.com"], "n": 1.5}'
    )
    assert item.task == "billing:invoice/send"
    assert item.identifier == "invoices"
    assert item.fill == 9 * 86400
    assert item.max_attempts == 5
    assert item.queue_name == "billing:eu"
    assert item.priority == -3
    assert item.job_key == "inv/42 eu"  # percent-decoded, '+' is a space
    assert item.job_key_mode == "preserve_run_at"
    assert item.tz == "Europe/Paris" and item.schedule.tz == "Europe/Paris"
    assert item.payload == {"dry_run": False, "to": ["a@example.com"], "n": 1.5}
    assert item.schedule.expression == "*/15 9-17 * * 1-5"
    assert item.schedule.minutes == {0, 15, 30, 45}
    assert item.schedule.hours == set(range(9, 18))
    assert item.schedule.days_of_week == {1, 2, 3, 4, 5}
    assert parse_cron_line(format_cron_item(item)) == item


def test_job_key_mode_defaults_to_replace_with_a_job_key() -> None:
    assert parse_cron_line("* * * * * t ?jobKey=k").job_key_mode == "replace"
    assert CronItem(CronSchedule("* * * * *"), "t", job_key="k").job_key_mode == "replace"


def test_stepped_ranges_lists_and_sunday_as_seven() -> None:
    schedule = CronSchedule("0-10/5,58 1-23/11 */10 1,6-7 5-7")
    assert schedule.minutes == {0, 5, 10, 58}
    assert schedule.hours == {1, 12, 23}
    assert schedule.days_of_month == {1, 11, 21, 31}
    assert schedule.months == {1, 6, 7}
    assert schedule.days_of_week == {5, 6, 0}
    assert CronSchedule("0 0 * * 7").days_of_week == {0}
    assert len(CronSchedule("0 0 * * 0-7").days_of_week) == 7
    assert CronSchedule("*/100 * * * *").minutes == {0}  # upstream accepts big steps


@pytest.mark.parametrize(
    ("alias", "fields"),
    [
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
        ("@monthly", "0 0 1 * *"),
        ("@weekly", "0 0 * * 0"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@hourly", "0 * * * *"),
    ],
)
def test_aliases(alias: str, fields: str) -> None:
    item = parse_cron_line(f"{alias} t ?max=2")
    assert item.schedule.expression == alias
    assert item.schedule.fields == tuple(fields.split())
    expanded = CronSchedule(fields)
    after = datetime(2024, 2, 27, 13, 7, tzinfo=UTC)
    assert item.next_runs(after, 4) == expanded.next_runs(after, 4)
    assert format_cron_item(item) == f"{alias} t ?max=2"


def test_comments_blank_lines_and_line_endings() -> None:
    text = (
        "# nightly jobs\r\n"
        "\r\n"
        "   # indented comment\n"
        "0 3 * * * backup\n"
        "\t\n"
        "  30 3 * * * report ?id=report-1  \r\n"
    )
    items = parse_crontab(text)
    assert [item.identifier for item in items] == ["backup", "report-1"]
    assert parse_crontab("") == [] and parse_crontab("# only\n\n") == []


@pytest.mark.parametrize(
    ("phrase", "seconds"),
    [
        ("30s", 30),
        ("1m", 60),
        ("2d4h", 2 * 86400 + 4 * 3600),
        ("1w", 7 * 86400),
        ("4w3d2h1m", 44761 * 60),
        ("1h1h", 7200),
        ("0s", 0),
        ("007m", 420),
    ],
)
def test_time_phrases(phrase: str, seconds: int) -> None:
    assert parse_time_phrase(phrase) == seconds
    assert parse_cron_line(f"* * * * * t ?fill={phrase}").fill == seconds


@pytest.mark.parametrize(
    ("phrase", "column", "got"),
    [
        ("", 1, ""),
        ("2", 1, "2"),
        ("h", 1, "h"),
        ("2d4x", 3, "4x"),
        ("1h30", 3, "30"),
        ("1 h", 1, "1 h"),
    ],
)
def test_bad_time_phrases(phrase: str, column: int, got: str) -> None:
    with pytest.raises(CrontabError) as info:
        parse_time_phrase(phrase)
    assert (info.value.column, info.value.got) == (column, got)
    assert "time phrase" in info.value.expected


def test_format_time_phrase_is_canonical() -> None:
    assert format_time_phrase(187200) == "2d4h"
    assert format_time_phrase(44761 * 60) == "4w3d2h1m"
    assert format_time_phrase(0) == "0s"
    with pytest.raises(ValueError, match="seconds"):
        format_time_phrase(-1)


def test_the_error_message() -> None:
    with pytest.raises(CrontabError) as info:
        parse_crontab("# header\n\n61 * * * * t\n")
    error = info.value
    assert str(error) == (
        "crontab line 3, column 1: expected a minute (0-59), '*', '*/n', 'a-b', 'a-b/n' or a "
        "list; got '61'"
    )
    assert (error.line, error.column, error.got) == (3, 1, "61")
    assert isinstance(error, ZodworkerError) and isinstance(error, ValueError)


@pytest.mark.parametrize(
    ("line", "column", "expected", "got"),
    [
        ("61 * * * * t", 1, "a minute (0-59)", "61"),
        ("   61 * * * * t", 4, "a minute (0-59)", "61"),
        ("0 24 * * * t", 3, "an hour (0-23)", "24"),
        ("0 0 1-40 * * t", 7, "a day of month (1-31)", "40"),
        ("0 0 * 0 * t", 7, "a month (1-12)", "0"),
        ("0 0 * * 1,2,8 t", 13, "a day of week (0-7", "8"),
        ("1,,2 * * * * t", 3, "a minute (0-59)", ""),
        ("0 0 * * mon t", 9, "a day of week", "mon"),
        ("*/0 * * * * t", 3, "a step of at least 1", "0"),
        ("0 0 1-9/0 * * t", 9, "a step of at least 1", "0"),
        ("0 0 5-1 * * t", 5, "a range 'a-b' with a < b", "5-1"),
        ("0 0 5-5 * * t", 5, "a range 'a-b' with a < b", "5-5"),
        ("0 0 30 2 * t", 5, "never runs", "30"),
        ("@reboot t", 1, "one of @yearly", "@reboot"),
        ("every_minute", 1, "a schedule", "every_minute"),
        ("* * * *", 8, "a day of week", None),
        ("* * * * *", 10, "a task identifier", None),
        ("* * * * *   ", 10, "a task identifier", None),
        ("* * * * * 9lives", 11, "a task identifier", "9lives"),
        ("* * * * * t?id=x", 11, "a task identifier", "t?id=x"),
        ("* * * * * t ?foo=1", 14, "an option (id, fill", "foo"),
        ("* * * * * t ?max=3&max=4", 20, "at most once", "max"),
        ("* * * * * t ?max", 17, "'=' and a value after 'max'", None),
        ("* * * * * t ?id=a&", 19, "an option (id, fill", ""),
        ("* * * * * t ?id=bad.id", 17, "an identifier", "bad.id"),
        ("* * * * * t ?fill=2d4x", 21, "a time phrase", "4x"),
        ("* * * * * t ?max=0", 18, "a number of attempts from 1 to 32767", "0"),
        ("* * * * * t ?max=40000", 18, "a number of attempts", "40000"),
        ("* * * * * t ?priority=high", 23, "a priority", "high"),
        ("* * * * * t ?queue=a%20b", 20, "a queue name", "a%20b"),
        ("* * * * * t ?jobKey=", 21, "a non-empty job key", ""),
        ("* * * * * t ?jobKey=k&jobKeyMode=unsafe_dedupe", 34, "'replace' or", "unsafe_dedupe"),
        ("* * * * * t ?jobKeyMode=replace", 14, "'jobKey' alongside", "jobKeyMode"),
        ("* * * * * t ?tz=Mars/Olympus", 17, "an IANA time zone", "Mars/Olympus"),
        ("* * * * * t ?tz=../etc/passwd", 17, "an IANA time zone", "../etc/passwd"),
        ("* * * * * t {a: 1}", 14, "a JSON object payload", "a: 1}"),
        ('* * * * * t {"a": 1,}', 21, "a JSON object payload", "}"),
        ('* * * * * t {"a": 1', 20, "a JSON object payload", None),
        ('* * * * * t {"a": 1} trailing', 22, "a JSON object payload", "trailing"),
        ('* * * * * t {"a": 1, "a": 2}', 13, "duplicate key 'a'", '{"a": 1, "a": 2}'),
        ('* * * * * t {"a": NaN}', 13, "NaN is not valid JSON", '{"a": NaN}'),
        ('* * * * * t {"a": 1e999}', 13, "finite numbers", '{"a": 1e999}'),
        ("* * * * * t [1, 2]", 13, "a JSON object ('{...}')", "[1,"),
        ('* * * * * t "text"', 13, "a JSON object ('{...}')", '"text"'),
        ("* * * * * t 42", 13, "a JSON object ('{...}')", "42"),
        ("* * * * * t # note", 13, "comments go on lines of their own", "#"),
        ("* * * * * t {} ?max=1", 16, "a JSON object payload", "?max=1"),
        ("* * * * * t ?max=1 ?id=x", 20, "options come first", "?id=x"),
    ],
)
def test_errors_point_at_the_offending_token(
    line: str, column: int, expected: str, got: str | None
) -> None:
    with pytest.raises(CrontabError) as info:
        parse_cron_line(line, line_number=7)
    error = info.value
    assert (error.line, error.column) == (7, column), str(error)
    assert expected in error.expected, str(error)
    assert error.got == got, str(error)
    assert str(error).startswith(f"crontab line 7, column {column}: expected ")


def test_duplicate_identifiers_across_lines() -> None:
    with pytest.raises(CrontabError) as info:
        parse_crontab("* * * * * a\n# comment\n0 * * * * b ?max=2&id=a\n")
    assert (info.value.line, info.value.column, info.value.got) == (3, 23, "a")
    assert "line 1 uses it" in info.value.expected
    with pytest.raises(CrontabError) as info:
        parse_crontab("* * * * * a\n  0 * * * * a")
    assert (info.value.line, info.value.column, info.value.got) == (2, 13, "a")
    # The same task twice is fine with distinct identifiers.
    assert len(parse_crontab("* * * * * a\n0 * * * * a ?id=a_hourly")) == 2


def test_every_bad_line_is_reported_not_only_the_first() -> None:
    text = "* * * * * fine\n61 * * * * late\n# ok\n* * * * * a b\n* * * * * fine\n"
    with pytest.raises(CrontabError) as info:
        parse_crontab(text)
    found = [(e.line, e.column, e.got) for e in info.value.errors]
    assert found == [(2, 1, "61"), (4, 13, "b"), (5, 11, "fine")]
    lines = str(info.value).splitlines()
    assert len(lines) == 3 and lines[0].startswith("crontab line 2, column 1: expected ")
    assert (info.value.line, info.value.column) == (2, 1)  # the first, as before


def test_a_crontab_file_names_itself_in_each_error(tmp_path: Path) -> None:
    path = tmp_path / "crontab"
    path.write_text("* * * * * ok\n* * * * 8 bad\n0 25 * * * bad2\n")
    with pytest.raises(CrontabError) as info:
        read_crontab(path)
    assert [e.path for e in info.value.errors] == [str(path)] * 2
    assert str(info.value).splitlines() == [
        f"crontab {path} line 2, column 9: " + info.value.errors[0].describe().split(": ", 1)[1],
        f"crontab {path} line 3, column 3: " + info.value.errors[1].describe().split(": ", 1)[1],
    ]


def test_errors_in_a_crontab_name_their_line() -> None:
    with pytest.raises(CrontabError) as info:
        parse_crontab("0 0 * * * ok\r\n\r\n0 0 * * * bad ?fill=1y\r\n")
    assert (info.value.line, info.value.column, info.value.got) == (3, 21, "1y")


@pytest.mark.parametrize(
    ("bad", "named"),
    [
        ({"task": "9"}, "task"),
        ({"identifier": "a b"}, "identifier"),
        ({"payload": {"x": float("nan")}}, "payload"),
        ({"payload": {1: 2}}, "payload"),
        ({"payload": [1]}, "payload"),
        ({"fill": -1}, "fill"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"queue_name": "a b"}, "queue_name"),
        ({"priority": 40000}, "priority"),
        ({"job_key": ""}, "job_key"),
        ({"job_key": "a\x00b"}, "job_key"),
        ({"job_key_mode": "replace"}, "job_key_mode"),
        ({"job_key": "k", "job_key_mode": "unsafe_dedupe"}, "job_key_mode"),
    ],
)
def test_constructed_items_are_validated(bad: dict[str, Any], named: str) -> None:
    with pytest.raises(ValueError, match=f"^{named}: "):
        CronItem(CronSchedule("* * * * *"), **{"task": "t", **bad})


def test_constructed_schedules_are_validated() -> None:
    with pytest.raises(CrontabError) as info:
        CronSchedule("* * * * * *")
    assert (info.value.column, info.value.expected) == (11, "the end of the schedule")
    with pytest.raises(CrontabError, match="IANA"):
        CronSchedule("* * * * *", tz="Nowhere/Special")


def test_schedules_compare_by_normalised_expression_and_zone() -> None:
    assert CronSchedule(" 0  9 * *\t1-5 ") == CronSchedule("0 9 * * 1-5")
    assert CronSchedule("0 9 * * 1-5").expression == "0 9 * * 1-5"
    assert CronSchedule("0 9 * * *") != CronSchedule("0 9 * * *", tz="Europe/Paris")
    line = '0 9 * * * t {"a": 1}'
    assert len({parse_cron_line(line), parse_cron_line(line)}) == 1  # hashable despite the dict
    assert parse_cron_line('0 9 * * * t {"a": 1}') != parse_cron_line("0 9 * * * t")


# ----------------------------------------------------------------------------- matching


def test_day_rule_is_graphile_workers_not_cronsims() -> None:
    # Both restricted: either matches (Vixie cron, graphile-worker).
    friday_13 = CronSchedule("0 0 13 * 5")
    assert friday_13.matches(datetime(2024, 6, 13, tzinfo=UTC))  # Thursday the 13th
    assert friday_13.matches(datetime(2024, 6, 14, tzinfo=UTC))  # Friday the 14th
    assert not friday_13.matches(datetime(2024, 6, 15, tzinfo=UTC))
    # '*/2' is restricted, so OR applies; cronsim ANDs because the text starts with '*'.
    odd_days_or_monday = CronSchedule("0 0 */2 * 1")
    monday_the_10th = datetime(2024, 6, 10, tzinfo=UTC)
    assert odd_days_or_monday.matches(monday_the_10th)
    assert not oracle_matches("0 0 */2 * 1", monday_the_10th)
    # '1-31' is not restricted, so only the day of week decides; cronsim ORs (every day).
    mondays = CronSchedule("0 0 1-31 * 1")
    tuesday = datetime(2024, 6, 11, tzinfo=UTC)
    assert not mondays.matches(tuesday)
    assert oracle_matches("0 0 1-31 * 1", tuesday)
    # One field '*': the other decides, everywhere.
    assert CronSchedule("0 0 * * 1").matches(monday_the_10th)
    assert not CronSchedule("0 0 1 * *").matches(monday_the_10th)


def test_matching_is_per_minute_and_needs_aware_datetimes() -> None:
    schedule = CronSchedule("30 12 * * *")
    assert schedule.matches(datetime(2024, 1, 1, 12, 30, 59, 999999, tzinfo=UTC))
    assert not schedule.matches(datetime(2024, 1, 1, 12, 31, tzinfo=UTC))
    assert schedule.matches(datetime(2024, 1, 1, 7, 30, tzinfo=timezone(timedelta(hours=-5))))
    with pytest.raises(ValueError, match="timezone-aware"):
        schedule.matches(datetime(2024, 1, 1, 12, 30))
    with pytest.raises(ValueError, match="timezone-aware"):
        schedule.next_runs(datetime(2024, 1, 1), 1)
    assert schedule.next_runs(datetime(2024, 1, 1, tzinfo=UTC), 0) == []
    with pytest.raises(ValueError, match=r"^n: must be"):
        schedule.next_runs(datetime(2024, 1, 1, tzinfo=UTC), -1)


def test_next_runs_are_strictly_after() -> None:
    schedule = CronSchedule("*/20 * * * *")
    at = datetime(2024, 1, 1, 10, 20, tzinfo=UTC)
    assert schedule.next_runs(at, 2) == [at + timedelta(minutes=20), at + timedelta(minutes=40)]
    assert schedule.next_runs(at - timedelta(microseconds=1), 1) == [at]
    leap = CronSchedule("0 0 29 2 *")
    assert leap.next_runs(datetime(2096, 3, 1, tzinfo=UTC), 1) == [
        datetime(2104, 2, 29, tzinfo=UTC)  # 2100 is not a leap year
    ]


def test_time_zone_shifts_with_the_seasons() -> None:
    item = parse_cron_line("0 9 * * 1-5 standup ?tz=Europe/Paris")
    winter, summer = (
        item.next_runs(datetime(2024, 1, 1, tzinfo=UTC), 1),
        item.next_runs(datetime(2024, 7, 1, tzinfo=UTC), 1),
    )
    assert winter == [datetime(2024, 1, 1, 8, tzinfo=UTC)]
    assert summer == [datetime(2024, 7, 1, 7, tzinfo=UTC)]
    assert item.matches(datetime(2024, 7, 1, 9, tzinfo=ZoneInfo("Europe/Paris")))
    assert not item.matches(datetime(2024, 7, 1, 9, tzinfo=UTC))


def runs_on_local_day(line: str, tz: str, day: date) -> list[datetime]:
    item = parse_cron_line(f"{line} ?tz={tz}")
    start, end = local_day_bounds(ZoneInfo(tz), day)
    runs = list(
        itertools.takewhile(lambda r: r < end, item.iter_runs(start - timedelta(seconds=1)))
    )
    for run in runs:
        assert item.matches(run)
    return runs


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


@pytest.mark.parametrize(
    ("tz", "day", "line", "expected"),
    [
        # Spring forward: 02:30 does not exist; it runs once, when the gap ends (03:00 local).
        ("Europe/Paris", date(2024, 3, 31), "30 2 * * * t", [utc(2024, 3, 31, 1, 0)]),
        ("America/New_York", date(2024, 3, 10), "30 2 * * * t", [utc(2024, 3, 10, 7, 0)]),
        # Fall back: the repeated time runs once, at its first occurrence (fold=0).
        ("Europe/Paris", date(2024, 10, 27), "30 2 * * * t", [utc(2024, 10, 27, 0, 30)]),
        ("America/New_York", date(2024, 11, 3), "30 1 * * * t", [utc(2024, 11, 3, 5, 30)]),
        # Skipped times and the end of the gap collapse into one run.
        (
            "Europe/Paris",
            date(2024, 3, 31),
            "0,30 2,3 * * * t",
            [utc(2024, 3, 31, 1, 0), utc(2024, 3, 31, 1, 30)],
        ),
        # Ordinary days are untouched.
        ("Europe/Paris", date(2024, 3, 30), "30 2 * * * t", [utc(2024, 3, 30, 1, 30)]),
        ("America/New_York", date(2024, 11, 4), "30 1 * * * t", [utc(2024, 11, 4, 6, 30)]),
    ],
)
def test_fixed_time_jobs_run_once_on_transition_days(
    tz: str, day: date, line: str, expected: list[datetime]
) -> None:
    assert runs_on_local_day(line, tz, day) == expected


def test_fixed_time_matching_around_transitions() -> None:
    paris = CronSchedule("30 2 * * *", tz="Europe/Paris")
    assert paris.matches(utc(2024, 3, 31, 1, 0))  # 03:00 CEST, the end of the gap
    assert not paris.matches(utc(2024, 3, 31, 1, 30))  # 03:30 CEST
    assert paris.matches(utc(2024, 10, 27, 0, 30))  # 02:30 CEST
    assert not paris.matches(utc(2024, 10, 27, 1, 30))  # 02:30 CET, the repeat


@pytest.mark.parametrize(
    ("tz", "day", "count"),
    [
        ("Europe/Paris", date(2024, 3, 31), 23),
        ("Europe/Paris", date(2024, 10, 27), 25),
        ("America/New_York", date(2024, 3, 10), 23),
        ("America/New_York", date(2024, 11, 3), 25),
        ("America/New_York", date(2024, 11, 4), 24),
    ],
)
@pytest.mark.parametrize("line", ["0 * * * * t", "@hourly t"])
def test_hourly_jobs_run_every_real_hour(tz: str, day: date, count: int, line: str) -> None:
    runs = runs_on_local_day(line, tz, day)
    assert len(runs) == count
    assert all(b - a == timedelta(hours=1) for a, b in itertools.pairwise(runs))


def test_interval_jobs_skip_the_gap_and_repeat_the_fold() -> None:
    # Every 30 minutes during local 2 o'clock: nothing on spring-forward day, 4 on fall-back.
    assert runs_on_local_day("*/30 2 * * * t", "Europe/Paris", date(2024, 3, 31)) == []
    assert runs_on_local_day("*/30 2 * * * t", "Europe/Paris", date(2024, 10, 27)) == [
        utc(2024, 10, 27, 0, 0),
        utc(2024, 10, 27, 0, 30),
        utc(2024, 10, 27, 1, 0),
        utc(2024, 10, 27, 1, 30),
    ]
    assert CronSchedule("*/30 2 * * *", tz="Europe/Paris").is_interval
    assert not CronSchedule("30 2 * * *", tz="Europe/Paris").is_interval


def test_iter_runs_is_lazy_and_ordered() -> None:
    runs: Iterator[datetime] = CronSchedule("* * * * *", tz="America/New_York").iter_runs(
        utc(2024, 11, 3, 4, 0)
    )
    first = list(itertools.islice(runs, 180))
    assert first == [utc(2024, 11, 3, 4, 1) + timedelta(minutes=i) for i in range(180)]
