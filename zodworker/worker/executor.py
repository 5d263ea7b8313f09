"""Running one job: handler in, :class:`Outcome` out.

The executor works out *what happened* to a job and nothing else; what to write about it is
the completer's business (:mod:`zodworker.worker.completer`). A job's run ends in one of:

* success: the handler returned;
* failure: the handler raised (``PermanentFailure`` fails it for good), the task is unknown to
  this pool, or a batch job (array payload) returned a list with exceptions in it: then only
  the failed elements are kept as the replacement payload for the retry;
* timeout: the task's ``timeout`` passed; the handler is cancelled (async) or abandoned (sync;
  it gets its abort signal) and the job fails with a ``TimeoutError``;
* interrupted: a forceful shutdown cancelled it; the job fails so it retries;
* abandoned: the pool lost the job's lease; the run is cancelled and its outcome is not
  written (the job is given back: another pool may already have it);
* cancelled: an operator cancelled the job while it ran; it fails for good.

An async handler that swallows our cancellation still ends as timeout / interrupted.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import msgspec

from ..errors import JobCancelled, JobTimeout, WorkerError
from ..job import Job
from .helpers import JobHelpers
from .joblog import encode_error
from .tasks import Runnable
from .threads import DaemonThreads

__all__ = ["CANCELLED", "LEASE_LOST", "Executor", "Outcome", "output_text"]

_NO_REPLACEMENT: Final[Any] = msgspec.UNSET
LEASE_LOST: Final = "lease lost"
CANCELLED: Final = "cancelled"


@dataclass(slots=True)
class Outcome:
    """What happened to one run of a job."""

    job: Job
    error: BaseException | None
    """None when the job succeeded."""
    duration: float
    """Seconds the handler ran."""
    replacement: Any = _NO_REPLACEMENT
    """For a batch job that partly failed: the payload to retry (the failed elements)."""
    give_back: bool = False
    """Aborted because the pool lost the job's lease: not an outcome to write; the job is
    given back (fenced) so it runs again."""
    record: bool = False
    """Its task keeps results (a history row once the job finishes for good)."""
    output: str | None = None
    """For a success of such a task: the handler's return value as JSON text."""


@dataclass(slots=True)
class _Run:
    """A job being run. ``cancelled_for`` is set when we cancel it ourselves."""

    job: Job
    handler_task: asyncio.Task[Any]
    helpers: JobHelpers
    cancelled_for: str | None = None


class Executor:
    """Runs jobs' handlers; knows which jobs are running."""

    __slots__ = ("_make_helpers", "_on_timeout", "_running", "_threads", "tasks")

    def __init__(
        self,
        tasks: Mapping[str, Runnable],
        *,
        make_helpers: Callable[[Job, bool], JobHelpers],
        threads: DaemonThreads,
        on_timeout: Callable[[Job], None],
    ) -> None:
        self.tasks = dict(tasks)
        """The tasks this pool runs, by identifier (swapped whole by ``replace_tasks``)."""
        self._make_helpers = make_helpers
        self._threads = threads
        self._on_timeout = on_timeout
        self._running: dict[int, _Run] = {}

    @property
    def running(self) -> int:
        """How many jobs are running now."""
        return len(self._running)

    async def run(self, job: Job) -> Outcome:
        """Run ``job``'s handler in the current task and return what happened."""
        runnable = self.tasks.get(job.task_identifier)
        started = time.perf_counter()
        if runnable is None:
            unknown = LookupError(f"unsupported task {job.task_identifier!r}")
            return Outcome(job, unknown, time.perf_counter() - started)
        helpers = self._make_helpers(job, not runnable.is_async)
        current = asyncio.current_task()
        assert current is not None
        run = _Run(job, current, helpers)
        self._running[job.id] = run
        timer = None
        if runnable.timeout:
            loop = asyncio.get_running_loop()
            timer = loop.call_later(runnable.timeout, self._cancel, run, "timeout")
        error: BaseException | None = None
        result: Any = None
        try:
            if runnable.is_async:
                result = await runnable.handler(job.payload, helpers)
            else:
                result = await self._threads.run(runnable.handler, job.payload, helpers)
        except asyncio.CancelledError:
            if run.cancelled_for is None:
                raise  # not ours: let it propagate
        except Exception as exc:
            error = exc
        finally:
            if timer is not None:
                timer.cancel()
            del self._running[job.id]
        duration = time.perf_counter() - started
        if run.cancelled_for is not None:  # even if the handler swallowed the cancel
            if current.cancelling():
                current.uncancel()
            error = self._cancelled_error(run, runnable)
            lost = run.cancelled_for == LEASE_LOST
            return Outcome(job, error, duration, give_back=lost, record=runnable.record)
        if error is None and isinstance(job.payload, list) and isinstance(result, list):
            outcome = _batch_outcome(job, result, duration)
        else:
            outcome = Outcome(job, error, duration)
        if runnable.record:
            outcome.record = True
            if outcome.error is None:
                outcome.output = output_text(result)
        return outcome

    def _cancelled_error(self, run: _Run, runnable: Runnable) -> BaseException:
        if run.cancelled_for == "timeout":
            self._on_timeout(run.job)
            return JobTimeout(f"task timed out after {runnable.timeout}s")
        if run.cancelled_for == CANCELLED:
            return JobCancelled("cancelled by an operator while it ran")
        return WorkerError(f"{run.cancelled_for}: the job was interrupted")

    @staticmethod
    def _cancel(run: _Run, reason: str) -> None:
        """Give the handler its abort signal, then cancel it (abandoning a sync one)."""
        if run.cancelled_for is None:
            run.cancelled_for = reason
            run.helpers.abort_signal.trigger(reason)
            run.handler_task.cancel()

    def interrupt_all(self, reason: str) -> None:
        """Cancel every running job (forceful shutdown); they end as failures."""
        for run in list(self._running.values()):
            self._cancel(run, reason)

    def abandon_lease(self, lease_id: str) -> None:
        """Abort every job running under ``lease_id`` (abort signal, then cancellation): the
        lease is lost, so their outcomes are not written and the jobs are given back."""
        for run in list(self._running.values()):
            if run.job.locked_by == lease_id:
                self._cancel(run, LEASE_LOST)

    def cancel_job(self, job_id: int) -> bool:
        """Abort the job ``job_id`` if it runs here (an operator cancelled it); it ends as
        a permanent failure. False when it does not run here."""
        run = self._running.get(job_id)
        if run is None:
            return False
        self._cancel(run, CANCELLED)
        return True

    def running_ids(self) -> set[int]:
        """Ids of the jobs running now."""
        return set(self._running)

    def abort_all(self, reason: str) -> None:
        """Give every running handler its abort signal (it may stop early; not cancelled)."""
        for run in list(self._running.values()):
            run.helpers.abort_signal.trigger(reason)


_encode_output = msgspec.json.Encoder().encode


def output_text(result: Any) -> str | None:
    """A handler's return value as the JSON text kept in its history row: a typed task's
    output arrives encoded already (``msgspec.Raw``); anything else is encoded if it can be
    (None, and values JSON cannot hold, keep no output)."""
    if isinstance(result, msgspec.Raw):
        return bytes(result).decode()
    if result is None:
        return None
    try:
        return _encode_output(result).decode()
    except (TypeError, ValueError):
        return None


def _batch_outcome(job: Job, results: list[Any], duration: float) -> Outcome:
    """A batch job may report per element: exception elements failed, keep only those."""
    failed = [
        item
        for item, outcome in zip(job.payload, results, strict=False)
        if isinstance(outcome, BaseException)
    ]
    if not failed:
        return Outcome(job, None, duration)
    error = RuntimeError(
        f"{len(failed)} of {len(job.payload)} batch elements failed: "
        + "; ".join(encode_error(o) for o in results if isinstance(o, BaseException))
    )
    return Outcome(job, error, duration, failed)
