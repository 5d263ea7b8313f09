"""Crontab files: reading lines into :class:`~zodworker.cron.item.CronItem` objects and
writing them back, in graphile-worker 0.18's format.

A crontab is one item per line; blank lines and lines whose first non-blank character is
``#`` are ignored (there are no end-of-line comments)::

    # min hour dom month dow  task            ?options                     {payload}
    */15  *    *   *     *    refresh_cache
    30    2    *   *     1-5  nightly_report  ?fill=2d4h&max=3&tz=Europe/Paris
    0     9    1   *     *    send_invoices   ?id=invoices&queue=billing   {"dry_run": false}
    @daily                    vacuum          ?jobKey=vacuum&jobKeyMode=preserve_run_at

Schedule
    Five fields or an alias (:mod:`zodworker.cron.fields`), evaluated in UTC or the item's
    ``tz`` with the day-of-month/day-of-week and daylight-saving rules of
    :mod:`zodworker.cron.schedule`.

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

Differences from graphile-worker
    Extensions (a line using one is rejected by graphile-worker): aliases, ``a-b/n`` and
    ``tz``. Stricter (rejected here, accepted there): ``max=0`` and values beyond the
    database's smallint columns, an empty ``jobKey``, ``jobKeyMode`` without ``jobKey``,
    empty option segments (``?a=1&&b=2``), schedules that never run, and JSON5-only
    payloads.

The API: :func:`parse_crontab` and :func:`parse_cron_line` return :class:`CronItem` objects
(each with a :class:`CronSchedule`), :func:`format_cron_item` writes an item back (the round
trip ``parse_cron_line(format_cron_item(item)) == item`` holds), and every problem is a
:class:`~zodworker.errors.CrontabError` naming the line, the 1-based column and what was
expected there.
"""

from __future__ import annotations

import json
import re
from typing import Any, Final, cast
from urllib.parse import quote_plus, unquote_plus

from ..errors import CrontabError
from .fields import bounded_int, parse_schedule, tokens_of
from .item import (
    _ID,
    _ID_EXPECTED,
    _JOB_KEY_EXPECTED,
    _JOB_KEY_MODES,
    _MAX_EXPECTED,
    _MAX_FILL,
    _MODE_EXPECTED,
    _PRIORITY_EXPECTED,
    _QUEUE,
    _QUEUE_EXPECTED,
    _TASK,
    _TASK_EXPECTED,
    CronItem,
    JobKeyMode,
    _json_roundtrips,
    _valid_job_key,
)
from .phrases import PHRASE_EXPECTED, format_time_phrase, parse_time_phrase
from .schedule import TZ_EXPECTED, CronSchedule, load_zone

__all__ = ["format_cron_item", "parse_cron_line", "parse_crontab"]

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
            raise _Invalid(f"{PHRASE_EXPECTED}, at most 999999999 days")
        return seconds
    if name in ("max", "priority"):
        low, high, expected = (
            (1, 32767, _MAX_EXPECTED) if name == "max" else (-32768, 32767, _PRIORITY_EXPECTED)
        )
        pattern = r"[0-9]+" if name == "max" else r"-?[0-9]+"
        if not re.fullmatch(pattern, value):
            raise _Invalid(expected)
        number = -bounded_int(value[1:]) if value[0] == "-" else bounded_int(value)
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
        load_zone(value)
    except ValueError:
        raise _Invalid(TZ_EXPECTED) from None
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
            raise exc.moved(line=1, column_offset=value_at - 1) from None
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
        tokens = tokens_of(line)
        end = len(line.rstrip()) + 1
        schedule = parse_schedule(tokens, end)
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
        raise exc.moved(line=line_number, column_offset=0) from None
    return item, id_column


def parse_cron_line(line: str, *, line_number: int = 1) -> CronItem:
    """The :class:`CronItem` on one crontab line (see the module docs for the format).

    Raises :class:`CrontabError` with ``line`` set to ``line_number`` and ``column`` the
    1-based column in ``line`` of the offending token.
    """
    return _parse_line(line, line_number)[0]


def parse_crontab(text: str) -> list[CronItem]:
    """The items of a crontab, in order; blank lines and ``#`` comment lines are skipped.

    Raises one :class:`CrontabError` reporting every invalid line (its ``errors``), and the
    second of two items with the same identifier (pointing at its ``id`` option, or its
    task when it has none).
    """
    items: list[CronItem] = []
    errors: list[CrontabError] = []
    first_line: dict[str, int] = {}
    for number, line in enumerate(re.split(r"\r?\n", text), start=1):
        stripped = line.strip()
        if stripped == "" or stripped.startswith("#"):
            continue
        try:
            item, id_column = _parse_line(line, number)
        except CrontabError as exc:
            errors.append(exc)
            continue
        if item.identifier in first_line:
            errors.append(
                CrontabError(
                    f"an identifier not used before (line {first_line[item.identifier]} uses "
                    "it; give each item its own '?id=...')",
                    item.identifier,
                    line=number,
                    column=id_column,
                )
            )
            continue
        first_line[item.identifier] = number
        items.append(item)
    if errors:
        raise CrontabError.combine(errors)
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
