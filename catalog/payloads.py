"""Payload models and per-task options of the reference platform.

Queue names and job keys that depend on the payload are functions of the validated model,
the way the typed client will take them.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

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


class IndexEndpoint(BaseModel):
    """Discover the jobs a customer endpoint declares."""

    id: str
    source: Literal["MANUAL", "API", "INTERNAL", "HOOK"] = "INTERNAL"
    source_data: dict[str, Any] | None = None
    reason: str | None = None


class ScheduleEmail(BaseModel):
    """Send a transactional email."""

    to: str = Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    subject: str = Field(min_length=1, max_length=200)
    template: str
    data: dict[str, Any] = Field(default_factory=dict)


class StartRun(BaseModel):
    """Prepare a run of a customer job."""

    id: str


class PerformRunExecution(BaseModel):
    """Execute one step of a run; one at a time per run (queue ``runs:{id}``)."""

    id: str


class DeliverEvent(BaseModel):
    """Deliver an event to the jobs subscribed to it."""

    id: str


class InvokeDispatcher(BaseModel):
    """Invoke an event dispatcher for one event record."""

    id: str
    event_record_id: str


class RunFinished(BaseModel):
    """Post-process a finished run."""

    id: str


class StartQueuedRuns(BaseModel):
    """Start runs waiting on a concurrency-limited queue (queue ``queue:{id}``)."""

    id: str


@dataclass(frozen=True)
class TaskOptions:
    """Defaults for one task: how its jobs are queued, keyed and retried."""

    model: type[BaseModel]
    queue_name: str | Callable[[Any], str] | None = None
    job_key: str | Callable[[Any], str] | None = None
    max_attempts: int | None = None
    priority: int | None = None


TASK_OPTIONS: dict[str, TaskOptions] = {
    "indexEndpoint": TaskOptions(IndexEndpoint, queue_name="internal-queue"),
    "scheduleEmail": TaskOptions(ScheduleEmail, queue_name="internal-queue", max_attempts=3),
    "startRun": TaskOptions(StartRun, queue_name="executions", max_attempts=13),
    "performRunExecution": TaskOptions(
        PerformRunExecution,
        queue_name=lambda p: f"runs:{p.id}",
        job_key=lambda p: f"job_run:EXECUTE_JOB:{p.id}",
        max_attempts=1,
    ),
    "deliverEvent": TaskOptions(DeliverEvent),
    "events.invokeDispatcher": TaskOptions(InvokeDispatcher),
    "runFinished": TaskOptions(RunFinished),
    "startQueuedRuns": TaskOptions(StartQueuedRuns, queue_name=lambda p: f"queue:{p.id}"),
}


def sample_payload(task: str, rng: random.Random, *, runs: int = 50) -> BaseModel:
    """A realistic payload for ``task``; run ids are drawn from ``runs`` distinct runs."""
    run_id = f"run_{rng.randrange(runs)}"
    match task:
        case "indexEndpoint":
            return IndexEndpoint(id=f"ep_{rng.randrange(10_000)}", source="API", reason="deploy")
        case "scheduleEmail":
            return ScheduleEmail(
                to=f"user{rng.randrange(1000)}@example.com",
                subject="Your run finished",
                template="run-finished",
                data={"run": run_id, "at": datetime.now(UTC).isoformat()},
            )
        case "startRun" | "performRunExecution" | "runFinished":
            return TASK_OPTIONS[task].model(id=run_id)
        case "deliverEvent":
            return DeliverEvent(id=f"evt_{rng.randrange(1_000_000)}")
        case "events.invokeDispatcher":
            return InvokeDispatcher(id=f"disp_{rng.randrange(100)}", event_record_id="evr_1")
        case "startQueuedRuns":
            return StartQueuedRuns(id=f"q_{rng.randrange(20)}")
    raise KeyError(f"unknown task {task!r}; known: {', '.join(TASK_OPTIONS)}")
