"""Time phrases: how long is ``"2d4h"``, and how is a number of seconds written as one.

A phrase is one or more ``<number><unit>`` parts with units ``s``, ``m``, ``h``, ``d`` and
``w`` (7 days), as graphile-worker's crontab ``fill`` option reads them. A crontab uses them
for its backfill windows; :func:`~zodworker.cron.recurring` accepts them too.
"""

from __future__ import annotations

import re
from typing import Final

from ..errors import ConfigError, CrontabError

__all__ = ["PHRASE_EXPECTED", "format_time_phrase", "parse_time_phrase"]

_PERIODS: Final = {"w": 7 * 86400, "d": 86400, "h": 3600, "m": 60, "s": 1}
_PHRASE_PART: Final = re.compile(r"([0-9]+)([smhdw])")
PHRASE_EXPECTED: Final = "a time phrase such as '2d4h' (numbers, each followed by s, m, h, d or w)"
"""What a :class:`~zodworker.errors.CrontabError` about a time phrase says was expected."""


def parse_time_phrase(phrase: str) -> int:
    """The number of seconds in a time phrase such as ``"2d4h"`` or ``"1w30m"``.

    A phrase is one or more ``<number><unit>`` parts, units ``s``, ``m``, ``h``, ``d`` and
    ``w`` (7 days), numbers of at most 9 digits. Raises :class:`CrontabError` whose
    ``column`` is the position in ``phrase`` of the first part that is not understood.
    """
    if phrase == "":
        raise CrontabError(PHRASE_EXPECTED, "")
    seconds = 0
    position = 0
    while position < len(phrase):
        part = _PHRASE_PART.match(phrase, position)
        if part is None:
            raise CrontabError(PHRASE_EXPECTED, phrase[position:], column=position + 1)
        if len(part.group(1).lstrip("0")) > 9:
            expected = f"{PHRASE_EXPECTED}, at most 9 digits per number"
            raise CrontabError(expected, phrase[position:], column=position + 1)
        seconds += int(part.group(1)) * _PERIODS[part.group(2)]
        position = part.end()
    return seconds


def format_time_phrase(seconds: int) -> str:
    """The shortest time phrase for ``seconds`` (``187200`` gives ``"2d4h"``; 0 gives ``"0s"``).

    ``parse_time_phrase(format_time_phrase(n)) == n`` for every ``n >= 0``; anything else
    raises :class:`~zodworker.errors.ConfigError` (field ``seconds``).
    """
    if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds < 0:
        raise ConfigError("seconds", f"must be an int >= 0, not {seconds!r}")
    if seconds == 0:
        return "0s"
    parts = []
    for unit, size in _PERIODS.items():
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)
