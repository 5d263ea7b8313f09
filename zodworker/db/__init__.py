"""The database layer: the only code that talks to psycopg at run time.

::

    sqlfiles      loads sql/ (migrations and named queries); identifiers enter only quoted
    rows          the one Job row factory, error translation, fetch/borrow helpers
    connect       Database: one shared pool per process, the LISTEN and heartbeat connections
    plans         what each producer-store operation does, computed once
    store         Store (async) and SyncStore (sync): the same plans, executed two ways
    worker_store  the worker pool's statements (fetch, complete, fail, return, liveness)
    cron          the cron scheduler's statements (known items, exactly-once claims)
    admin         counts, metrics and cleanup for operators
    migrate       the migration protocol (statements in sql/queries/migrate.sql)

It imports only the vocabulary (``zodworker.job``, ``zodworker.errors``); everything above it
(worker, cron, the client, the command line) reaches PostgreSQL through these modules.
"""

from __future__ import annotations

from .connect import Database, conninfo_from_env
from .migrate import MigrationResult, latest_revision, migrate
from .rows import AsyncTarget, SyncTarget, translate_errors
from .store import Store, SyncStore

__all__ = [
    "AsyncTarget",
    "Database",
    "MigrationResult",
    "Store",
    "SyncStore",
    "SyncTarget",
    "conninfo_from_env",
    "latest_revision",
    "migrate",
    "translate_errors",
]
