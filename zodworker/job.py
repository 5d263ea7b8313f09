"""What a job is, and what it takes to ask for one.

:class:`JobSpec` is a request to add a job; :func:`check_spec` validates one before anything
is sent to the database, with an error that names the field and the fix. :class:`Job` is a
row of the jobs table as the database returned it.

A job's state is derived from its columns (see ``sql/migrations/000019.sql``):
``waiting`` (run_at in the future) -> ``runnable`` -> ``running`` (locked; attempts was
incremented when it was locked) -> deleted on success, or back to ``waiting`` with
``last_error`` on failure, or ``dead`` once attempts reaches max_attempts.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final, Literal, get_args

import msgspec

from .errors import JobSpecError, PayloadEncodeError

__all__ = [
    "DEFAULT_SCHEMA",
    "Job",
    "JobKeyMode",
    "JobSpec",
    "check_key_mode",
    "check_spec",
    "encode_checked",
    "encode_payload",
]

DEFAULT_SCHEMA: Final = "graphile_worker"

JobKeyMode = Literal["replace", "preserve_run_at", "unsafe_dedupe"]
"""How adding a job whose key already exists behaves.

``replace`` (default): the waiting job is updated in place (payload, run_at, ...), which
debounces. ``preserve_run_at``: the same, but run_at is kept while the job has not been
attempted yet, which throttles (a fixed batching window). In both modes a job that is already
running keeps running and a new job is added for the new call. ``unsafe_dedupe``: the
existing job is returned untouched, whatever its state; use only when losing the update is
acceptable.
"""

_KEY_MODES: Final = frozenset(get_args(JobKeyMode))
_SMALLINT_MIN: Final = -32768
_SMALLINT_MAX: Final = 32767
MAX_IDENTIFIER_LENGTH: Final = 128
MAX_QUEUE_NAME_LENGTH: Final = 128
MAX_JOB_KEY_LENGTH: Final = 512


class JobSpec(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A request to add one job. Field names follow the database's ``job_spec`` type.

    ``None`` means "the database default": payload ``{}``, run_at now, max_attempts 25,
    priority 0 (smaller runs first), no queue, no key, no flags.
    """

    identifier: str
    payload: Any = None
    queue_name: str | None = None
    run_at: datetime | None = None
    max_attempts: int | None = None
    job_key: str | None = None
    priority: int | None = None
    flags: Sequence[str] | None = None


class Job(msgspec.Struct):
    """One row of the jobs table, with its task identifier and queue name resolved.

    Build it with keywords; the database layer builds it positionally (in field order),
    which costs a tenth as much per row on the fetch path."""

    id: int
    task_identifier: str
    queue_name: str | None
    payload: Any
    priority: int
    run_at: datetime
    attempts: int
    max_attempts: int
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    key: str | None
    locked_at: datetime | None
    locked_by: str | None
    revision: int
    flags: dict[str, bool] | None
    task_id: int
    job_queue_id: int | None
    is_available: bool


_encoder = msgspec.json.Encoder()
_packer = msgspec.msgpack.Encoder()
# A non-finite float in MessagePack: 0xcb (float64) then 0x7ff../0xfff.., or 0xca (float32)
# then 0x7f8../0xff8... UTF-8 text never has 0xcb or 0xca followed by 0x7f or 0xff, so a miss
# proves a value holds no NaN or infinity; a hit (rarely by chance) only costs the walk.
_NON_FINITE = re.compile(rb"\xcb[\x7f\xff][\xf0-\xff]|\xca[\x7f\xff][\x80-\xff]")


def encode_payload(payload: Any, field: str = "payload") -> str:
    """Encode a payload as JSON text, or raise :class:`PayloadEncodeError` naming the field.

    The one encoder every path uses (add_job, add_jobs, the typed client). Besides what
    cannot be encoded at all, it refuses what JSON encoding would silently change or
    PostgreSQL would reject later, aborting the caller's transaction: NaN and infinities
    (which would become ``null``), NUL characters (``\\u0000``, which PostgreSQL text cannot
    hold) and nesting too deep to encode.
    """
    return encode_checked(payload, payload, field).decode("utf-8")


def encode_checked(value: Any, payload: Any, field: str, *, nul_ok: bool = False) -> bytes:
    """Encode ``value`` (which holds ``payload``, or is it) with the checks of
    :func:`encode_payload`; errors name ``field`` and the path inside the payload.
    ``nul_ok``: NUL characters pass (for JSON stored as ``json``, which keeps ``\\u0000``)."""
    try:
        encoded = _encoder.encode(value)
        # NaN and infinities become null; typed payloads hold nulls all the time, so a null
        # is followed up by a cheap exact test before the payload is walked.
        if (b"\\u0000" in encoded and not nul_ok) or (
            b"null" in encoded and _may_hold_non_finite(payload)
        ):
            _refuse_lossy(msgspec.to_builtins(payload), field, nul_ok=nul_ok)
    except PayloadEncodeError:
        raise
    except RecursionError:
        raise PayloadEncodeError(
            field,
            "is nested too deeply to store as JSON; flatten it (a few hundred levels at most)",
        ) from None
    except (TypeError, ValueError, OverflowError, msgspec.EncodeError) as exc:
        raise PayloadEncodeError(
            field,
            f"cannot be encoded as JSON ({exc}); pass JSON-compatible values (dict, list, str, "
            "int, float, bool, None, datetime, UUID, msgspec Struct, dataclass)",
        ) from None
    return encoded


def _may_hold_non_finite(value: Any) -> bool:
    """False only when ``value`` surely holds no NaN or infinity (see ``_NON_FINITE``)."""
    try:
        packed = _packer.encode(value)
    except (TypeError, ValueError, OverflowError, msgspec.EncodeError):
        return True  # cannot tell: walk it
    return _NON_FINITE.search(packed) is not None


def _refuse_lossy(value: Any, path: str, *, nul_ok: bool = False) -> None:
    """Raise :class:`PayloadEncodeError` at the first NaN/infinity or NUL in ``value``."""
    if isinstance(value, float):
        if not math.isfinite(value):
            raise PayloadEncodeError(
                path, f"is {value}, which JSON cannot represent; use null, a string or a number"
            )
    elif isinstance(value, str):
        if "\x00" in value and not nul_ok:
            raise PayloadEncodeError(
                path, "contains a NUL character, which PostgreSQL cannot store; remove it"
            )
    elif isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and "\x00" in key and not nul_ok:
                raise PayloadEncodeError(
                    path, f"has a key with a NUL character ({key!r}); PostgreSQL cannot store it"
                )
            _refuse_lossy(item, f"{path}.{key}", nul_ok=nul_ok)
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _refuse_lossy(item, f"{path}[{index}]", nul_ok=nul_ok)


def _check_text(field: str, value: object, limit: int, *, optional: bool) -> None:
    if value is None:
        if optional:
            return
        raise JobSpecError(field, "is required; pass a non-empty string")
    if not isinstance(value, str):
        raise JobSpecError(field, f"must be a string, got {type(value).__name__}")
    if not value:
        hint = "pass None to leave it unset" if optional else "pass a non-empty string"
        raise JobSpecError(field, f"must not be empty; {hint}")
    if len(value) > limit:
        raise JobSpecError(field, f"is {len(value)} characters long; the limit is {limit}")
    if "\x00" in value:
        raise JobSpecError(field, "contains a NUL character, which PostgreSQL text cannot store")


def _check_smallint(field: str, value: object, low: int) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise JobSpecError(field, f"must be an integer, got {type(value).__name__}")
    if not low <= value <= _SMALLINT_MAX:
        raise JobSpecError(field, f"is {value}; it must be between {low} and {_SMALLINT_MAX}")


def check_key_mode(value: object, field: str = "job_key_mode") -> None:
    """Raise :class:`JobSpecError` unless ``value`` is a :data:`JobKeyMode` (or None)."""
    if value is not None and value not in _KEY_MODES:
        raise JobSpecError(
            field, f"is {value!r}; expected one of {', '.join(repr(m) for m in sorted(_KEY_MODES))}"
        )


def check_spec(spec: JobSpec, prefix: str = "") -> None:
    """Validate ``spec`` against the schema's limits; raise :class:`JobSpecError` if invalid.

    ``prefix`` is prepended to field names (``"specs[3]."``) so batch errors point at the
    offending element.
    """
    identifier, queue, key = spec.identifier, spec.queue_name, spec.job_key
    priority, attempts = spec.priority, spec.max_attempts
    if (  # the common case in one expression (~2x quicker per spec); else field by field
        type(identifier) is str
        and 0 < len(identifier) <= MAX_IDENTIFIER_LENGTH
        and "\x00" not in identifier
        and (queue is None or (type(queue) is str and 0 < len(queue) <= MAX_QUEUE_NAME_LENGTH))
        and (key is None or (type(key) is str and 0 < len(key) <= MAX_JOB_KEY_LENGTH))
        and (queue is None or "\x00" not in queue)
        and (key is None or "\x00" not in key)
        and (
            priority is None
            or (type(priority) is int and _SMALLINT_MIN <= priority <= _SMALLINT_MAX)
        )
        and (attempts is None or (type(attempts) is int and 1 <= attempts <= _SMALLINT_MAX))
        and spec.run_at is None
        and spec.flags is None
    ):
        return
    _check_fields(spec, prefix)


def _check_fields(spec: JobSpec, prefix: str) -> None:
    """:func:`check_spec` field by field, naming the first field that is wrong."""
    _check_text(prefix + "identifier", spec.identifier, MAX_IDENTIFIER_LENGTH, optional=False)
    _check_text(prefix + "queue_name", spec.queue_name, MAX_QUEUE_NAME_LENGTH, optional=True)
    _check_text(prefix + "job_key", spec.job_key, MAX_JOB_KEY_LENGTH, optional=True)
    _check_smallint(prefix + "priority", spec.priority, _SMALLINT_MIN)
    _check_smallint(prefix + "max_attempts", spec.max_attempts, 1)
    run_at = spec.run_at
    if run_at is not None:
        if not isinstance(run_at, datetime):
            raise JobSpecError(
                prefix + "run_at", f"must be a datetime, got {type(run_at).__name__}"
            )
        if run_at.tzinfo is None or run_at.utcoffset() is None:
            raise JobSpecError(
                prefix + "run_at",
                "is a naive datetime; pass a timezone-aware one, e.g. datetime.now(timezone.utc)",
            )
    flags = spec.flags
    if flags is not None:
        if isinstance(flags, str) or not all(isinstance(flag, str) for flag in flags):
            raise JobSpecError(prefix + "flags", "must be a list of strings, e.g. ['slow']")
        for flag in flags:
            _check_text(prefix + "flags", flag, 2**20, optional=False)
