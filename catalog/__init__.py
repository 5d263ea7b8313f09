"""The reference catalog of a Trigger.dev-like platform: payload models and task options.

Used by the examples, the benchmarks and the acceptance tests as a realistic workload.
The typed client (``ZodWorker`` / ``TaskCatalog``) will declare its tasks from these.
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

__all__ = [
    "TASK_OPTIONS",
    "DeliverEvent",
    "IndexEndpoint",
    "InvokeDispatcher",
    "PerformRunExecution",
    "RunFinished",
    "ScheduleEmail",
    "StartQueuedRuns",
    "StartRun",
    "TaskOptions",
    "sample_payload",
]
