"""The reference catalog of a Trigger.dev-like platform: payload models and task options.

Used by the examples, the benchmarks and the acceptance tests as a realistic workload.
:class:`Platform` is the typed catalog for ``ZodWorker``; :func:`platform_with_handlers`
gives it handlers.
"""

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
    TaskOptions,
    sample_payload,
)
from .tasks import INVOKE_DISPATCHER, Platform, platform_with_handlers

__all__ = [
    "INVOKE_DISPATCHER",
    "TASK_OPTIONS",
    "DeliverEvent",
    "IndexEndpoint",
    "InvokeDispatcher",
    "PerformRunExecution",
    "Platform",
    "RunFinished",
    "ScheduleEmail",
    "StartQueuedRuns",
    "StartRun",
    "TaskOptions",
    "platform_with_handlers",
    "sample_payload",
]
