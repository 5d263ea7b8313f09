"""Typed handlers as worker tasks: decode the stored payload, then call the handler.

The worker runs plain tasks, ``handler(payload, helpers)`` on JSON data. A typed handler wants
a validated object instead: a catalog task's payload model, or a recurring task's
:class:`~zodworker.cron.CronTick`. :func:`typed_task` is the one wrapper that does that for
both (with an optional OpenTelemetry CONSUMER span); :func:`catalog_task` and
:func:`recurring_task` only say how to decode.

A catalog payload is validated again when the job runs (it may have been added by an older
deploy, by Node, or by raw SQL). One that does not fit fails the job permanently with the
validation message as ``last_error`` (policy ``"fail"``, the default) instead of retrying it
``max_attempts`` times; policy ``"retry"`` lets it retry.

A task with an ``output`` type has its handler's return value validated against it and
encoded as JSON for its history row (:mod:`zodworker.results`); a value that does not fit
fails the job for good with an :class:`~zodworker.errors.OutputValidationError` naming the
field. Tasks that keep results (``output`` or ``history``) are marked ``record``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, Literal

import msgspec

from .catalog import PayloadCodec, TaskDef
from .cron.recurring import Recurring, decode_tick
from .errors import (
    ConfigError,
    OutputValidationError,
    PayloadEncodeError,
    PayloadValidationError,
    PermanentFailure,
)
from .job import encode_checked
from .tracing import Tracing, strip_trace
from .worker.helpers import JobHelpers
from .worker.tasks import Task

__all__ = ["InvalidPayloadPolicy", "catalog_task", "check_policy", "recurring_task", "typed_task"]

InvalidPayloadPolicy = Literal["fail", "retry"]
"""What a job whose stored payload does not validate does: fail for good, or retry."""


def check_policy(invalid_payload: object) -> None:
    """Raise ConfigError unless ``invalid_payload`` is a policy."""
    if invalid_payload not in ("fail", "retry"):
        raise ConfigError("invalid_payload", "must be 'fail' or 'retry'")


def typed_task(
    handler: Callable[[Any, JobHelpers], Any],
    decode: Callable[[Any], Any],
    *,
    timeout: float | None = None,
    tracing: Tracing | None = None,
    output: Callable[[Any], Any] | None = None,
    record: bool = False,
) -> Task:
    """A worker task calling ``handler(decode(payload), helpers)``, async or in a thread as
    the handler is, inside a CONSUMER span when ``tracing`` is given; ``output`` turns the
    return value into what is kept; ``record`` keeps it (a history row)."""
    if inspect.iscoroutinefunction(handler):
        call = handler if output is None else _then_async(handler, output)

        async def run_async(payload: Any, helpers: JobHelpers) -> Any:
            if tracing is None:
                return await call(decode(payload), helpers)
            with tracing.run(helpers.job, payload):
                return await call(decode(payload), helpers)

        return Task(run_async, timeout=timeout, record=record)

    call_sync = handler if output is None else _then(handler, output)

    def run_sync(payload: Any, helpers: JobHelpers) -> Any:
        if tracing is None:
            return call_sync(decode(payload), helpers)
        with tracing.run(helpers.job, payload):
            return call_sync(decode(payload), helpers)

    return Task(run_sync, timeout=timeout, record=record)


def _then_async(
    handler: Callable[[Any, JobHelpers], Any], output: Callable[[Any], Any]
) -> Callable[[Any, JobHelpers], Any]:
    """``handler`` (async) with ``output`` applied to what it returns."""

    async def call(value: Any, helpers: JobHelpers) -> Any:
        return output(await handler(value, helpers))

    return call


def _then(
    handler: Callable[[Any, JobHelpers], Any], output: Callable[[Any], Any]
) -> Callable[[Any, JobHelpers], Any]:
    """``handler`` (plain) with ``output`` applied to what it returns."""

    def call(value: Any, helpers: JobHelpers) -> Any:
        return output(handler(value, helpers))

    return call


def output_encoder(codec: PayloadCodec[Any], task: str) -> Callable[[Any], msgspec.Raw]:
    """Validates a handler's return value against the task's output type and encodes it
    (``msgspec.Raw``, JSON); raises :class:`OutputValidationError` naming the field."""

    def encode(value: Any) -> msgspec.Raw:
        try:
            valid = codec.validate(value, task=task)
            data = codec.to_json(valid)
            # kept as json, which holds NUL characters; NaN and infinities it cannot
            return msgspec.Raw(encode_checked(data, data, "output", nul_ok=True))
        except PayloadValidationError as exc:
            field = "output" if exc.path == "payload" else f"output.{exc.path}"
            raise OutputValidationError(task, field, exc.detail) from exc
        except PayloadEncodeError as exc:  # NaN, infinity, nesting too deep: named as output
            raise OutputValidationError(task, exc.field, exc.reason) from exc

    return encode


def catalog_task(
    spec: TaskDef[Any], policy: InvalidPayloadPolicy, tracing: Tracing | None = None
) -> Task:
    """The worker task for a catalog task with a handler (see the module docs)."""
    handler = spec.handler
    assert handler is not None
    codec, name = spec.codec, spec.identifier

    def decode(payload: Any) -> Any:
        try:
            return codec.validate(strip_trace(payload), task=name)
        except PayloadValidationError as exc:
            if policy == "fail":
                raise PermanentFailure(f"invalid payload: {exc}") from exc
            raise

    output = None if spec.output_codec is None else output_encoder(spec.output_codec, name)
    return typed_task(
        handler,
        decode,
        timeout=spec.timeout,
        tracing=tracing,
        output=output,
        record=spec.records,
    )


def recurring_task(entry: Recurring) -> Task:
    """The worker task for a recurring task: the handler gets a ``CronTick``."""
    return typed_task(entry.handler, decode_tick)
