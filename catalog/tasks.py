"""The reference platform as a typed :class:`~zodworker.TaskCatalog`.

::

    client = ZodWorker(catalog=Platform(), producer_only=True)       # a web process
    await client.enqueue(Platform.startRun, StartRun(id="run_1"), tx=conn)
    await client.enqueue(Platform.invokeDispatcher, InvokeDispatcher(id="d", event_record_id="e"))

    worker = ZodWorker(catalog=platform_with_handlers(startRun=start_run))   # a worker

Every task's defaults (queue, job key, attempts, priority) come from
:data:`catalog.payloads.TASK_OPTIONS`, so the catalog and the benchmarks cannot drift apart.
``Platform()`` declares no handlers: it is what producers use. :func:`platform_with_handlers`
gives the same tasks with handlers, for workers, demos and tests.

The identifier ``events.invokeDispatcher`` is not a Python name, so it cannot be declared as a
class attribute; ``Platform()`` adds it itself and ``Platform.invokeDispatcher`` is its typed
handle.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import replace
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel

from zodworker import CatalogError, JobHelpers, TaskCatalog, TaskDef, task

from .payloads import (
    TASK_OPTIONS,
    DeliverEvent,
    IndexEndpoint,
    InvokeDispatcher,
    PerformRunExecution,
    RunFinished,
    ScheduleEmail,
    StartQueuedRuns,
    StartRun,
)

__all__ = ["INVOKE_DISPATCHER", "Platform", "platform_with_handlers"]

M = TypeVar("M", bound=BaseModel)

INVOKE_DISPATCHER = "events.invokeDispatcher"


def _declare(model: type[M], identifier: str) -> TaskDef[M]:
    """``identifier``'s task with its payload ``model`` and the defaults in TASK_OPTIONS."""
    options = TASK_OPTIONS[identifier]
    if options.model is not model:
        raise CatalogError(
            f"{identifier}: TASK_OPTIONS declares {options.model.__name__}, not {model.__name__}"
        )
    return task(
        model,
        queue_name=options.queue_name,
        job_key=options.job_key,
        max_attempts=options.max_attempts,
        priority=options.priority,
    ).named(identifier)


class Platform(TaskCatalog):
    """The reference platform's tasks, without handlers (for producers)."""

    indexEndpoint = _declare(IndexEndpoint, "indexEndpoint")
    scheduleEmail = _declare(ScheduleEmail, "scheduleEmail")
    startRun = _declare(StartRun, "startRun")
    performRunExecution = _declare(PerformRunExecution, "performRunExecution")
    deliverEvent = _declare(DeliverEvent, "deliverEvent")
    runFinished = _declare(RunFinished, "runFinished")
    startQueuedRuns = _declare(StartQueuedRuns, "startQueuedRuns")

    invokeDispatcher: ClassVar[TaskDef[InvokeDispatcher]]
    """The task ``events.invokeDispatcher`` (set below: not declarable as an attribute)."""

    def __init__(self, **tasks: TaskDef[Any]) -> None:
        super().__init__(**{INVOKE_DISPATCHER: type(self).invokeDispatcher, **tasks})


Platform.invokeDispatcher = _declare(InvokeDispatcher, INVOKE_DISPATCHER)

Recorder = Callable[[str, Any], object]
"""``record(identifier, payload)``: called by the recording handlers (may be async)."""


def platform_with_handlers(
    record: Recorder | None = None, /, **handlers: Callable[[Any, JobHelpers], Any]
) -> TaskCatalog:
    """The platform's tasks with handlers.

    ``handlers`` maps identifiers to handlers (``**{"events.invokeDispatcher": fn}`` for the
    dotted one). Every other task gets a handler calling ``record(identifier, payload)`` when
    ``record`` is given, else none (this process only enqueues it). An unknown identifier is
    a :class:`~zodworker.CatalogError` naming close ones.
    """
    platform = Platform()
    for name in handlers:
        platform[name]  # raises CatalogError with close names for a typo
    tasks: dict[str, TaskDef[Any]] = {}
    for name, spec in platform.items():
        handler = handlers.get(name)
        if handler is None and record is not None:
            handler = _recording(name, record)
        tasks[name] = replace(spec, handler=handler)
    return TaskCatalog(**tasks)


def _recording(identifier: str, record: Recorder) -> Callable[[Any, JobHelpers], Any]:
    async def handler(payload: Any, helpers: JobHelpers) -> None:
        result = record(identifier, payload)
        if inspect.isawaitable(result):
            await result

    handler.__name__ = handler.__qualname__ = f"record_{identifier.replace('.', '_')}"
    return handler
