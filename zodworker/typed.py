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
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, Literal

from .catalog import TaskDef
from .cron.recurring import Recurring, decode_tick
from .errors import ConfigError, PayloadValidationError, PermanentFailure
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
) -> Task:
    """A worker task calling ``handler(decode(payload), helpers)``, async or in a thread as
    the handler is, inside a CONSUMER span when ``tracing`` is given."""
    if inspect.iscoroutinefunction(handler):

        async def run_async(payload: Any, helpers: JobHelpers) -> Any:
            if tracing is None:
                return await handler(decode(payload), helpers)
            with tracing.run(helpers.job, payload):
                return await handler(decode(payload), helpers)

        return Task(run_async, timeout=timeout)

    def run_sync(payload: Any, helpers: JobHelpers) -> Any:
        if tracing is None:
            return handler(decode(payload), helpers)
        with tracing.run(helpers.job, payload):
            return handler(decode(payload), helpers)

    return Task(run_sync, timeout=timeout)


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

    return typed_task(handler, decode, timeout=spec.timeout, tracing=tracing)


def recurring_task(entry: Recurring) -> Task:
    """The worker task for a recurring task: the handler gets a ``CronTick``."""
    return typed_task(entry.handler, decode_tick)
