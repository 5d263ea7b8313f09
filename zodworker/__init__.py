"""zodworker: typed background jobs for Python on PostgreSQL.

zodworker shares its database schema with graphile-worker (revision 20), so Python and
Node workers can run each other's jobs. The public names, in four tiers:

* **typed client**: declare tasks in a :class:`TaskCatalog`, enqueue and run them with
  :class:`ZodWorker` (recurring tasks, cleanup, a metrics reporter), await their typed
  results through a :class:`JobHandle`;
* **worker**: run plain handlers with :func:`run` / :func:`run_once` / :class:`WorkerPool`;
* **database**: add jobs in your own transaction with :class:`Store` / :class:`SyncStore`,
  under concurrency and rate limits (:class:`Limit`, :class:`Rate`), install the schema
  with :func:`migrate`;
* **errors**: one tree under :class:`ZodworkerError`.

The house, bottom up: the vocabulary (``job``, ``limits``, ``errors``, ``events``, ``config``,
``lifecycle``), ``db/`` (the only user of psycopg), ``worker/``, ``cron/`` and ``embedded/``,
then the face (``taskdef``, ``catalog``, ``typed``, ``tracing``, ``results``, ``producer``,
``client``, ``service``, ``cli/``, ``web/``).
"""

from .catalog import NOT_GIVEN, EnqueueOptions, NotGiven, PayloadCodec, TaskCatalog, TaskDef, task
from .client import ZodWorker
from .config import Cleanup, FetchAhead, MetricsOptions, Reporter, WorkerOptions
from .cron import CronTick, Recurring, recurring
from .db import (
    AsyncTarget,
    MigrationResult,
    Store,
    SyncStore,
    SyncTarget,
    latest_revision,
    migrate,
)
from .errors import (
    CatalogError,
    ConfigError,
    CrontabError,
    DatabaseError,
    EmbeddedError,
    EmbeddedUnavailable,
    IncompatibleSchemaError,
    JobCancelled,
    JobFailed,
    JobKeyModeError,
    JobSpecError,
    JobTimeout,
    LifecycleError,
    MigrationError,
    OutputValidationError,
    PackageError,
    PayloadEncodeError,
    PayloadValidationError,
    PermanentFailure,
    ResultTimeout,
    ResultUnavailable,
    Snooze,
    TaskLoadError,
    UnknownOptionError,
    UnsupportedRevisionError,
    UsageError,
    WorkerError,
    ZodworkerError,
)
from .events import Event, EventName, Events
from .job import DEFAULT_SCHEMA, Job, JobKeyMode, JobSpec
from .limits import LIMITED_FLAG, Limit, Rate
from .results import JobHandle
from .service import resolve_connection, run, run_once
from .settings import Settings, load_settings
from .worker import (
    AbortSignal,
    Handler,
    JobHelpers,
    PoolStats,
    Task,
    WorkerPool,
    load_task_directory,
)

__all__ = [  # noqa: RUF022 (grouped by tier, each group sorted; see tests/unit/test_public_api.py)
    # typed client
    "NOT_GIVEN",
    "Cleanup",
    "CronTick",
    "EnqueueOptions",
    "JobHandle",
    "NotGiven",
    "PayloadCodec",
    "Recurring",
    "Reporter",
    "TaskCatalog",
    "TaskDef",
    "ZodWorker",
    "recurring",
    "task",
    # worker
    "AbortSignal",
    "Event",
    "EventName",
    "Events",
    "FetchAhead",
    "Handler",
    "JobHelpers",
    "MetricsOptions",
    "PoolStats",
    "Settings",
    "Task",
    "WorkerOptions",
    "WorkerPool",
    "load_settings",
    "load_task_directory",
    "resolve_connection",
    "run",
    "run_once",
    # database
    "DEFAULT_SCHEMA",
    "LIMITED_FLAG",
    "AsyncTarget",
    "Job",
    "JobKeyMode",
    "JobSpec",
    "Limit",
    "MigrationResult",
    "Rate",
    "Store",
    "SyncStore",
    "SyncTarget",
    "latest_revision",
    "migrate",
    # errors
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
