"""zodworker: typed background jobs for Python on PostgreSQL.

zodworker shares its database schema with graphile-worker (revision 20), so Python and
Node workers can run each other's jobs. The public surface is re-exported here.
"""

from .errors import (
    DatabaseError,
    IncompatibleSchemaError,
    JobKeyModeError,
    JobSpecError,
    MigrationError,
    PayloadEncodeError,
    UnsupportedRevisionError,
    ZodworkerError,
)
from .job import DEFAULT_SCHEMA, Job, JobKeyMode, JobSpec
from .migrate import MigrationResult, latest_revision, migrate
from .store import AsyncTarget, Store

__all__ = [
    "DEFAULT_SCHEMA",
    "AsyncTarget",
    "DatabaseError",
    "IncompatibleSchemaError",
    "Job",
    "JobKeyMode",
    "JobKeyModeError",
    "JobSpec",
    "JobSpecError",
    "MigrationError",
    "MigrationResult",
    "PayloadEncodeError",
    "Store",
    "UnsupportedRevisionError",
    "ZodworkerError",
    "latest_revision",
    "migrate",
]
