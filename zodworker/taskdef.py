"""What a task is: its payload type, handler, output type and default job options.

:func:`task` declares one (:class:`TaskDef`); placing it in a
:class:`~zodworker.catalog.TaskCatalog` names it. A task is generic in its payload type
``P`` and its output type ``O`` (``Any`` when it declares none), so that
``client.enqueue(Catalog.task, payload)`` is checked by mypy and its handle's ``result()``
is typed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Generic

from typing_extensions import TypeVar

from .codec import PayloadCodec
from .job import JobKeyMode, JobSpec, check_key_mode
from .limits import Limit, Rate, check_concurrency, check_limits, check_rate

__all__ = ["OutputOf", "TaskDef", "TaskHandler", "task"]

P = TypeVar("P")
O = TypeVar("O", default=Any)  # noqa: E741
O_co = TypeVar("O_co", covariant=True)


class OutputOf(Generic[O_co]):
    """Never made: names a task's output type in its call signature (``TaskDef.__call__``),
    so that ``client.enqueue(Catalog.task, payload)`` returns a ``JobHandle[Output]``."""


TaskHandler = Callable[[P, Any], Any]
"""``handler(payload, helpers)``: async or plain; gets the validated payload object."""


_UNSET: Any = object()


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskDef(Generic[P, O]):
    """One task: its payload type, its handler, its output type and its default job options.

    ``queue_name`` and ``job_key`` may be callables of the validated payload. ``identifier``
    is filled in when the task is placed in a catalog (the attribute or keyword name)."""

    payload: type[P]
    handler: TaskHandler[P] | None = None
    queue_name: str | Callable[[P], str] | None = None
    job_key: str | Callable[[P], str] | None = None
    job_key_mode: JobKeyMode | None = None
    priority: int | None = None
    max_attempts: int | None = None
    flags: Sequence[str] | None = None
    timeout: float | None = None
    limits: tuple[Limit, ...] = ()
    """The limits its jobs are under (:mod:`zodworker.limits`); the first orders them."""
    concurrency_limit: int | None = None
    rate_limit: Rate | None = None
    limit_key: str | Callable[[P], object] | None = None
    output: type[O] | None = None
    """What the handler returns (a pydantic model, a msgspec Struct, any type pydantic
    validates): checked when the job ends and kept as its result (:mod:`zodworker.results`)."""
    history: bool = False
    """Keep a history row (and the return value) for its jobs even without ``output``."""
    identifier: str = ""
    codec: PayloadCodec[P] = _UNSET
    output_codec: PayloadCodec[O] | None = field(default=None, repr=False, compare=False)
    template: JobSpec = field(init=False, repr=False, compare=False)
    """The task's job with its defaults (no payload): each job is a copy of it, which
    costs a fifth of building one field by field."""

    def __post_init__(self) -> None:
        if self.codec is _UNSET:
            object.__setattr__(self, "codec", PayloadCodec(self.payload))
        if self.output is not None and self.output_codec is None:
            object.__setattr__(self, "output_codec", PayloadCodec(self.output))
        check_key_mode(self.job_key_mode)
        queue, key = self.queue_name, self.job_key
        template = JobSpec(
            identifier=self.identifier,
            queue_name=None if callable(queue) else queue,
            max_attempts=self.max_attempts,
            job_key=None if callable(key) else key,
            priority=self.priority,
            flags=self.flags,
        )
        object.__setattr__(self, "template", template)
        object.__setattr__(self, "limits", check_limits(self.limits, "limits"))
        check_concurrency(self.concurrency_limit, "concurrency_limit")
        if self.rate_limit is not None:
            check_rate(self.rate_limit, "rate_limit")

    @property
    def records(self) -> bool:
        """Its jobs leave a history row with their result (``output`` or ``history``)."""
        return self.output is not None or self.history

    def named(self, identifier: str) -> TaskDef[P, O]:
        """This task under ``identifier``; ``concurrency_limit`` / ``rate_limit`` become
        its own limit, ``task:<identifier>``, first among its limits."""
        if self.concurrency_limit is None and self.rate_limit is None:
            return replace(self, identifier=identifier)
        own = Limit(
            f"task:{identifier}",
            concurrency=self.concurrency_limit,
            rate=self.rate_limit,
            key=self.limit_key,
        )
        others = tuple(limit for limit in self.limits if limit.name != own.name)
        return replace(
            self,
            identifier=identifier,
            limits=check_limits((own, *others), f"{identifier}.limits"),
            concurrency_limit=None,
            rate_limit=None,
            limit_key=None,
        )

    def __call__(self, payload: P, _output: OutputOf[O] | None = None, /) -> P:
        """``payload`` validated against this task's payload type (raises
        :class:`~zodworker.errors.PayloadValidationError`). Being callable with the payload
        type is also what lets mypy name the expected model when ``client.enqueue`` gets a
        payload of the wrong type; ``_output`` is never passed: it is how type checkers
        learn the task's output type from the same signature."""
        return self.codec.validate(payload, task=self.identifier)


def task(
    payload: type[P],
    handler: TaskHandler[P] | None = None,
    *,
    queue_name: str | Callable[[P], str] | None = None,
    job_key: str | Callable[[P], str] | None = None,
    job_key_mode: JobKeyMode | None = None,
    priority: int | None = None,
    max_attempts: int | None = None,
    flags: Sequence[str] | None = None,
    timeout: float | None = None,
    limits: Sequence[Limit] = (),
    concurrency_limit: int | None = None,
    rate_limit: Rate | None = None,
    limit_key: str | Callable[[P], object] | None = None,
    output: type[O] | None = None,
    history: bool = False,
) -> TaskDef[P, O]:
    """Declare a task (see :class:`TaskDef`). ``handler`` may be left out for tasks this
    process only enqueues.

    Results (:mod:`zodworker.results`): ``output`` types what the handler returns; it is
    validated and kept with the job's history row, and ``await handle.result()`` returns it.
    ``history=True`` keeps the history row of a task without ``output``.

    Flow control (:mod:`zodworker.limits`): ``concurrency_limit`` (jobs at once) and
    ``rate_limit`` (starts per window) make the task's own limit, per ``limit_key`` (a
    string or a callable of the payload; None: one for all); ``limits`` adds named limits
    shared with other tasks."""
    return TaskDef(
        payload=payload,
        handler=handler,
        queue_name=queue_name,
        job_key=job_key,
        job_key_mode=job_key_mode,
        priority=priority,
        max_attempts=max_attempts,
        flags=flags,
        timeout=timeout,
        limits=tuple(limits),
        concurrency_limit=concurrency_limit,
        rate_limit=rate_limit,
        limit_key=limit_key,
        output=output,
        history=history,
    )
