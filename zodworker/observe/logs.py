"""Log formats for the command line: ``text`` (one line per record, tracebacks indented
under it) and ``json`` (one JSON object per line, for log shippers).

A JSON line carries ``ts`` (ISO 8601, UTC), ``level``, ``logger``, ``message``, the
structured fields zodworker attaches to its records (``job_id``, ``task``, ``queue``,
``attempt``, ``max_attempts``, ``duration_ms``, ``outcome``, ...), any ``extra=`` fields of
the application's own records, and ``exc`` (the formatted traceback) when there is one.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any, Final, Literal

import msgspec

__all__ = ["LOG_FORMATS", "JsonFormatter", "LogFormat", "configure_logging"]

LogFormat = Literal["text", "json"]
LOG_FORMATS: Final = ("text", "json")
TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# What every LogRecord has; anything else on a record was passed as a field (extra=).
_STANDARD: Final = frozenset(
    vars(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None))
) | {"message", "asctime", "taskName"}
_encoder = msgspec.json.Encoder()


class JsonFormatter(logging.Formatter):
    """Formats a record as one line of JSON (see the module docs)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                line[key] = value
        if record.exc_info and record.exc_info[1] is not None:
            line["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return _encoder.encode(_jsonable(line)).decode()


def _jsonable(value: Any) -> Any:
    """Fields that JSON cannot hold directly (datetimes, exceptions, ...) as strings."""
    try:
        _encoder.encode(value)
        return value
    except (TypeError, msgspec.EncodeError, OverflowError):
        if isinstance(value, dict):
            return {str(k): _jsonable(v) for k, v in value.items()}
        return str(value)


def configure_logging(level: int, log_format: LogFormat = "text") -> None:
    """Set up the root logger for a zodworker process (replacing earlier handlers)."""
    handler = logging.StreamHandler()
    formatter = JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    handler.setFormatter(formatter)
    logging.basicConfig(level=level, handlers=[handler], force=True)
