"""zodworker: typed background jobs for Python on PostgreSQL.

zodworker shares its database schema with graphile-worker (revision 20), so Python and
Node workers can run each other's jobs. The public surface is re-exported here.
"""

from .catalog import PayloadCodec, TaskCatalog, TaskDef, task
from .client import (
    NOT_GIVEN,
    Cleanup,
    CronTick,
    NotGiven,
    Recurring,
    Reporter,
    ZodWorker,
    recurring,
)
from .errors import (
    CatalogError,
    ConfigError,
    CrontabError,
    DatabaseError,
    IncompatibleSchemaError,
    JobKeyModeError,
    JobSpecError,
    MigrationError,
    PayloadEncodeError,
    PayloadValidationError,
    PermanentFailure,
    TaskLoadError,
    UnsupportedRevisionError,
    WorkerError,
    ZodworkerError,
)
from .events import Event, EventName, Events
from .helpers import AbortSignal, JobHelpers
from .job import DEFAULT_SCHEMA, Job, JobKeyMode, JobSpec
from .migrate import MigrationResult, latest_revision, migrate
from .options import WorkerOptions
from .runner import Task, WorkerPool, resolve_connection, run, run_once
from .store import AsyncTarget, Store
from .sync_store import SyncStore
from .tasks import Handler, load_task_directory

__all__ = [
    "DEFAULT_SCHEMA",
    "NOT_GIVEN",
    "AbortSignal",
    "AsyncTarget",
    "CatalogError",
    "Cleanup",
    "ConfigError",
    "CronTick",
    "CrontabError",
    "DatabaseError",
    "Event",
    "EventName",
    "Events",
    "Handler",
    "IncompatibleSchemaError",
    "Job",
    "JobHelpers",
    "JobKeyMode",
    "JobKeyModeError",
    "JobSpec",
    "JobSpecError",
    "MigrationError",
    "MigrationResult",
    "NotGiven",
    "PayloadCodec",
    "PayloadEncodeError",
    "PayloadValidationError",
    "PermanentFailure",
    "Recurring",
    "Reporter",
    "Store",
    "SyncStore",
    "Task",
    "TaskCatalog",
    "TaskDef",
    "TaskLoadError",
    "UnsupportedRevisionError",
    "WorkerError",
    "WorkerOptions",
    "WorkerPool",
    "ZodWorker",
    "ZodworkerError",
    "latest_revision",
    "load_task_directory",
    "migrate",
    "recurring",
    "resolve_connection",
    "run",
    "run_once",
    "task",
]
