"""Schedule expressions: which values does each of the five fields (or an alias) allow.

Five fields: minute (0-59), hour (0-23), day of month (1-31), month (1-12) and day of week
(0-7; 0 and 7 are both Sunday). Each is a comma-separated list of ``n``, ``*``, ``*/n``
(every n-th value from the field's minimum), ``a-b`` (a < b, as graphile-worker requires) or
``a-b/n`` (every n-th value from a to b). Instead of five fields, an alias: ``@yearly``/
``@annually`` (``0 0 1 1 *``), ``@monthly`` (``0 0 1 * *``), ``@weekly`` (``0 0 * * 0``),
``@daily``/``@midnight`` (``0 0 * * *``) or ``@hourly`` (``0 * * * *``).

A schedule that can never run (``0 0 31 2 *``) is rejected; graphile-worker accepts it
silently. When it runs (the day-of-month / day-of-week rule, time zones) is
:mod:`zodworker.cron.schedule`'s business.

Every problem is a :class:`~zodworker.errors.CrontabError` whose column points at the
offending list element or number. This module is internal to :mod:`zodworker.cron`.
"""

from __future__ import annotations

import re
from typing import Final, NamedTuple, cast

from ..errors import CrontabError

__all__ = ["ALIASES", "ParsedSchedule", "bounded_int", "parse_schedule", "tokens_of"]


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
ALIASES: Final = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
"""The aliases accepted instead of five fields, with the fields each stands for."""
_SCHEDULE_EXPECTED: Final = (
    "a schedule: five fields 'minute hour day-of-month month day-of-week' or one of "
    + ", ".join(ALIASES)
)
_PART: Final = re.compile(
    r"(?P<star>\*)(?:/(?P<star_step>[0-9]+))?"
    r"|(?P<a>[0-9]+)(?:-(?P<b>[0-9]+)(?:/(?P<range_step>[0-9]+))?)?"
)
# The longest month of each month, February counting its leap day.
_DAYS_IN_MONTH: Final = (0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def bounded_int(digits: str) -> int:
    """``int(digits)``, except that numbers of more than 9 digits all read as 10**9 (no
    limit in the format is that high, and Python refuses to read very long numbers)."""
    return int(digits) if len(digits.lstrip("0")) <= 9 else 10**9


def tokens_of(text: str) -> list[tuple[str, int]]:
    """The whitespace-separated tokens of ``text`` with their 1-based columns."""
    return [(found.group(), found.start() + 1) for found in re.finditer(r"\S+", text)]


def _parse_field(spec: _FieldSpec, text: str, column: int) -> frozenset[int]:
    """The values a field allows; errors point at the offending list element or number."""
    values: set[int] = set()

    def number(digits: str, at: int) -> int:
        value = bounded_int(digits)
        if not spec.low <= value <= spec.high:
            raise CrontabError(spec.expected, digits, column=at)
        return spec.low if spec.wraps and value == spec.high else value

    def step(digits: str | None, at: int) -> int:
        if digits is None:
            return 1
        if bounded_int(digits) < 1:
            raise CrontabError("a step of at least 1 (as in '*/5')", digits, column=at)
        return bounded_int(digits)

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
                high = bounded_int(high_digits)
                if high <= bounded_int(found["a"]):
                    raise CrontabError("a range 'a-b' with a < b", part, column=at)
                stride = step(found["range_step"], b_at + len(high_digits) + 1)
                for value in range(bounded_int(found["a"]), high + 1, stride):
                    values.add(spec.low if spec.wraps and value == spec.high else value)
        at += len(part) + 1
    return frozenset(values)


class ParsedSchedule(NamedTuple):
    """A schedule read from the start of a line's tokens."""

    expression: str
    fields: tuple[str, str, str, str, str]
    values: tuple[frozenset[int], ...]
    consumed: int  # how many tokens the schedule took


def parse_schedule(tokens: list[tuple[str, int]], end_column: int) -> ParsedSchedule:
    """Parse the schedule at the start of ``tokens`` (columns as in the tokens)."""
    if not tokens:
        raise CrontabError(_SCHEDULE_EXPECTED, None, column=end_column)
    first, first_column = tokens[0]
    if first.startswith("@"):
        if first not in ALIASES:
            raise CrontabError(f"one of {', '.join(ALIASES)}", first, column=first_column)
        texts = ALIASES[first].split()
        values = tuple(
            _parse_field(spec, text, 1) for spec, text in zip(_FIELDS, texts, strict=True)
        )
        fields = cast(tuple[str, str, str, str, str], tuple(texts))
        return ParsedSchedule(first, fields, values, 1)
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
    return ParsedSchedule(" ".join(texts), fields, tuple(parsed), 5)
