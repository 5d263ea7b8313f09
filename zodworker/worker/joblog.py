"""What a finished job is called and what is said about it: its outcome, the ``last_error``
text of a failure, and its log line.

Outcomes (the ``outcome`` label of ``zodworker_jobs_total`` and of ``job:complete``)::

    success    the handler returned
    retry      it failed and will run again (attempts left)
    failed     it failed for good: PermanentFailure, or its last attempt
    timeout    the task's timeout passed (JobTimeout; it retries while attempts last)
    cancelled  an operator cancelled it while it ran (JobCancelled; never retried)

``last_error`` is the first line graphile-worker would store (``Type: message``) followed by
the Python traceback, so that the error of a job that failed at 3 a.m. can be read from the
table; tracebacks are cut in the middle beyond :data:`MAX_ERROR_CHARS`.

Log lines (logger of the pool, ``zodworker`` by default): one INFO line per success (off
with ``WorkerOptions(log_jobs=False)``, ``--no-log-jobs`` or graphile-worker's
``NO_LOG_SUCCESS`` environment variable), a WARNING with the traceback per failure that will
be retried and an ERROR per failure for good. Each record carries ``job_id``, ``task``,
``queue``, ``attempt``, ``max_attempts``, ``duration_ms`` and ``outcome`` as attributes, which
the JSON log format prints as fields.
"""

from __future__ import annotations

import logging
import os
import traceback
from typing import Final, Literal

from ..errors import JobCancelled, JobTimeout, PermanentFailure, Snooze
from ..job import Job

__all__ = ["MAX_ERROR_CHARS", "JobLog", "OutcomeName", "encode_error", "failure_text", "outcome"]

OutcomeName = Literal["success", "retry", "failed", "timeout", "cancelled", "snoozed"]
MAX_ERROR_CHARS: Final = 16_000
_CUT: Final = "\n  ...\n"


def encode_error(error: BaseException) -> str:
    """One line for an exception: its type and message."""
    text = str(error)
    name = type(error).__name__
    return f"{name}: {text}" if text else name


def failure_text(error: BaseException) -> str:
    """The ``last_error`` for a failure: ``Type: message``, then the traceback (when the
    exception was raised, not just made), cut in the middle to at most MAX_ERROR_CHARS."""
    head = encode_error(error)
    if error.__traceback__ is None:
        return head[:MAX_ERROR_CHARS]
    text = f"{head}\n{''.join(traceback.format_exception(error)).rstrip()}"
    if len(text) <= MAX_ERROR_CHARS:
        return text
    keep = (MAX_ERROR_CHARS - len(_CUT)) // 2
    return text[:keep] + _CUT + text[-keep:]


def outcome(job: Job, error: BaseException | None) -> OutcomeName:
    """What a run of ``job`` that ended with ``error`` (None: success) amounts to."""
    if error is None:
        return "success"
    if isinstance(error, Snooze):
        return "snoozed"
    if isinstance(error, JobCancelled):
        return "cancelled"
    if isinstance(error, JobTimeout):
        return "timeout"
    if isinstance(error, PermanentFailure) or job.attempts >= job.max_attempts:
        return "failed"
    return "retry"


class JobLog:
    """Writes the log line of each finished job (see the module docs)."""

    __slots__ = ("_logger", "_success")

    def __init__(self, logger: logging.Logger, *, log_jobs: bool) -> None:
        self._logger = logger
        self._success = log_jobs and not os.environ.get("NO_LOG_SUCCESS")

    def success(self, job: Job, duration: float) -> None:
        """The INFO line of a success (when enabled)."""
        if self._success and self._logger.isEnabledFor(logging.INFO):
            self._logger.info(
                "job %s (%s) attempt %d/%d succeeded in %.2f ms",
                job.id,
                job.task_identifier,
                job.attempts,
                job.max_attempts,
                duration * 1000,
                extra=_fields(job, duration, "success"),
            )

    def snoozed(self, job: Job, seconds: float, duration: float) -> None:
        """The INFO line of a snooze (when success lines are enabled)."""
        if self._success and self._logger.isEnabledFor(logging.INFO):
            self._logger.info(
                "job %s (%s) attempt %d/%d snoozed for %.3gs after %.2f ms (attempt kept)",
                job.id,
                job.task_identifier,
                job.attempts - 1,
                job.max_attempts,
                seconds,
                duration * 1000,
                extra=_fields(job, duration, "snoozed"),
            )

    def failure(self, job: Job, error: BaseException, duration: float, name: OutcomeName) -> None:
        """The WARNING (will retry) or ERROR (for good) line of a failure, with traceback."""
        final = name in ("failed", "cancelled") or job.attempts >= job.max_attempts
        self._logger.log(
            logging.ERROR if final else logging.WARNING,
            "job %s (%s) attempt %d/%d %s after %.2f ms: %s",
            job.id,
            job.task_identifier,
            job.attempts,
            job.max_attempts,
            "failed for good" if final else "failed, will retry",
            duration * 1000,
            encode_error(error),
            exc_info=error if error.__traceback__ is not None else None,
            extra=_fields(job, duration, name),
        )


def _fields(job: Job, duration: float, name: OutcomeName) -> dict[str, object]:
    return {
        "job_id": job.id,
        "task": job.task_identifier,
        "queue": job.queue_name,
        "attempt": job.attempts,
        "max_attempts": job.max_attempts,
        "duration_ms": round(duration * 1000, 3),
        "outcome": name,
    }
