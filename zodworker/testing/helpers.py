"""Draining jobs inline and asserting on what was enqueued (see :mod:`zodworker.testing`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from ..admin import Admin, JobFilter
from ..client import ZodWorker
from ..errors import UsageError
from ..events import Event, Events
from ..job import Job
from ..service import run_once
from ..taskdef import TaskDef

__all__ = ["Drained", "assert_enqueued", "drain", "eager", "enqueued"]


@dataclass
class Drained:
    """What :func:`drain` ran: every attempt (``ran``), the jobs that succeeded, and the
    attempts that failed with their errors (retried later or failed for good)."""

    ran: list[Job] = field(default_factory=list)
    succeeded: list[Job] = field(default_factory=list)
    failed: list[tuple[Job, BaseException]] = field(default_factory=list)

    def seen(self, event: Event) -> None:
        """Count one ``job:complete`` event (snoozes are not runs)."""
        job, outcome = event.job, event.data.get("outcome")
        if job is None or outcome == "snoozed":
            return
        self.ran.append(job)
        if event.error is None:
            self.succeeded.append(job)
        else:
            self.failed.append((job, event.error))


async def drain(client: ZodWorker, *, concurrency: int = 1) -> Drained:
    """Run every job of the client's tasks that is due now, and those they add that are due
    too, through the real worker; return what ran. Jobs scheduled later (and retries,
    which wait for their backoff) stay in the table."""
    conninfo = client.conninfo
    if conninfo is None:
        raise UsageError("drain(client): initialize the client first")
    tasks = client.worker_tasks()
    drained = Drained()
    events = Events()
    events.on("job:complete", drained.seen)
    await run_once(
        tasks,
        connection=conninfo,
        schema=client.schema,
        concurrency=concurrency,
        migrate=False,
        handle_signals=False,
        log_jobs=False,
        events=events,
        poll_interval=0.05,
        unserved_warning_interval=0,
    )
    return drained


def _identifier(task: TaskDef[Any] | str) -> str:
    return task if isinstance(task, str) else task.identifier


async def enqueued(client: ZodWorker, task: TaskDef[Any] | str) -> list[Job]:
    """The jobs of ``task`` in the client's jobs table (any state), oldest first."""
    admin, target = Admin(client.schema), client.connections
    jobs: list[Job] = []
    after = None
    while True:
        page = await admin.list_jobs(
            target, JobFilter(task=_identifier(task)), limit=1000, after=after, newest=False
        )
        jobs.extend(view.job for view in page.jobs)
        if page.after is None:
            return jobs
        after = page.after


_UNSET: Any = object()


async def assert_enqueued(
    client: ZodWorker,
    task: TaskDef[Any] | str,
    *,
    payload: Any = _UNSET,
    queue_name: str | None = _UNSET,
    count: int | None = None,
) -> list[Job]:
    """Assert that jobs of ``task`` are in the table: with ``payload`` (a model of the task's
    payload type, or a mapping whose fields must all match the job's), in ``queue_name``;
    exactly ``count`` of them (default: at least one). Returns the matching jobs."""
    jobs = await enqueued(client, task)
    wanted = _payload_fields(client, task, payload)
    matching = [
        job
        for job in jobs
        if (wanted is None or _contains(job.payload, wanted))
        and (queue_name is _UNSET or job.queue_name == queue_name)
    ]
    ok = len(matching) == count if count is not None else bool(matching)
    if not ok:
        seen = "\n".join(
            f"  job {j.id}: queue {j.queue_name!r}, payload {j.payload!r}" for j in jobs
        )
        raise AssertionError(
            f"expected {count if count is not None else 'at least 1'} job(s) of "
            f"{_identifier(task)!r}"
            + ("" if wanted is None else f" with payload fields {wanted!r}")
            + ("" if queue_name is _UNSET else f" in queue {queue_name!r}")
            + f", found {len(matching)}; the table holds {len(jobs)} of that task"
            + (f":\n{seen}" if seen else "")
        )
    return matching


def _payload_fields(client: ZodWorker, task: TaskDef[Any] | str, payload: Any) -> Any:
    """The payload to look for as JSON-ready data (a model goes through its task's codec)."""
    if payload is _UNSET:
        return None
    if isinstance(payload, Mapping):
        return dict(payload)
    spec = client.catalog.resolve(task)
    return spec.codec.to_json(spec.codec.validate(payload, task=spec.identifier))


def _contains(value: Any, wanted: Any) -> bool:
    """``wanted``'s fields all in ``value`` (recursively for mappings)."""
    if isinstance(wanted, Mapping):
        return isinstance(value, Mapping) and all(
            key in value and _contains(value[key], item) for key, item in wanted.items()
        )
    return bool(value == wanted)


@contextmanager
def eager(client: ZodWorker) -> Iterator[list[Drained]]:
    """While inside, ``await client.enqueue(...)`` (without ``tx=``: a job in an open
    transaction can only run after its commit) drains at once, so the job has run when it
    returns; yields the list of what each such drain ran."""
    runs: list[Drained] = []
    enqueue: Callable[..., Any] = client.enqueue

    async def enqueue_and_run(*args: Any, **options: Any) -> Any:
        handle = await enqueue(*args, **options)
        if options.get("tx") is None:
            runs.append(await drain(client))
        return handle

    setattr(client, "enqueue", enqueue_and_run)  # noqa: B010 (shadows the method on this client)
    try:
        yield runs
    finally:
        delattr(client, "enqueue")
