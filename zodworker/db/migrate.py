"""Bringing a database's graphile-worker schema to the revision this version implements.

The protocol is graphile-worker's, so zodworker and Node graphile-worker processes can
migrate one database at the same time:

1. Read the newest revision and the newest *breaking* revision from ``<schema>.migrations``.
   If the table is missing, create the schema and the table (several processes may race
   here; whoever loses goes round again).
2. A newer breaking revision than we know: refuse (:class:`IncompatibleSchemaError`). A newer
   non-breaking one: warn and carry on.
3. Apply each missing migration in its own transaction whose *first* statement inserts its
   ``migrations`` row. Two processes applying the same revision collide on that primary key;
   the loser rolls back and counts it as done.

zodworker's own tables (``_zodworker_*``, e.g. the pool heartbeats behind crash recovery)
are migrated afterwards from ``sql/zodworker``, recorded in ``_zodworker_migrations`` with
the same protocol, so graphile-worker's revision never changes because of them.
The protocol's statements are in ``sql/queries/migrate.sql``.

Our ``000019.sql`` is a baseline: on an empty database it creates the whole revision-19
schema and records revisions 1..19 at once. A database between revisions 1 and 18 (an old
graphile-worker) must be upgraded by graphile-worker first (:class:`UnsupportedRevisionError`).
"""

from __future__ import annotations

import json
import logging
import random
import time
from dataclasses import dataclass, field
from typing import Any, Final

import anyio
import psycopg
from psycopg.pq import TransactionStatus
from psycopg_pool import AsyncConnectionPool

from ..errors import (
    DatabaseError,
    IncompatibleSchemaError,
    MigrationError,
    UnsupportedRevisionError,
)
from ..job import DEFAULT_SCHEMA
from . import sqlfiles
from .rows import AsyncConn, AsyncTarget, Params, borrow, fetch, translate_errors

__all__ = [
    "MigrationResult",
    "drop_schema",
    "installed_revision",
    "latest_revision",
    "migrate",
    "migrate_target",
    "migrate_url",
]

logger = logging.getLogger("zodworker.migrate")

BASELINE: Final = 19
_MIN_SERVER_VERSION: Final = 120000
_NOT_THERE: Final = frozenset({"42P01", "42703", "3F000"})  # missing table / column / schema
_CLASH: Final = frozenset({"23505", "42P06", "42P07", "42710"})  # someone else created it
_BOOTSTRAP_ATTEMPTS: Final = 5
_BASELINE_WAIT_S: Final = 120.0


@dataclass(frozen=True, slots=True)
class MigrationResult:
    """What :func:`migrate` found and did."""

    before: int | None
    """The revision the database was at (None: no schema)."""
    after: int
    """The revision it is at now."""
    applied: list[int] = field(default_factory=list)
    """Revisions this call applied (others may have been applied concurrently by others)."""
    own_applied: list[int] = field(default_factory=list)
    """zodworker's own migrations (``sql/zodworker``) this call applied."""


def latest_revision() -> int:
    """The newest schema revision this version of zodworker knows."""
    return sqlfiles.migrations()[-1].revision


async def _run(
    conn: AsyncConn, name: str, schema: str, params: Params = None
) -> list[tuple[Any, ...]]:
    # prepare=False: migration files hold many statements, which cannot be prepared
    return await fetch(conn, sqlfiles.query(name, schema), params, prepare=False)


async def _state(conn: AsyncConn, schema: str) -> tuple[int, int | None, int | None]:
    with translate_errors():
        async with conn.transaction():
            [row] = await _run(conn, "migrate_state", schema)
    return row[0], row[1], row[2]


async def _bootstrap(conn: AsyncConn, schema: str) -> None:
    with translate_errors():
        async with conn.transaction():
            await _run(conn, "migrate_bootstrap", schema)
            breaking = (sorted(sqlfiles.BREAKING_REVISIONS),)
            await _run(conn, "migrate_mark_breaking", schema, breaking)


async def _read_state(conn: AsyncConn, schema: str) -> tuple[int | None, int | None]:
    for attempt in range(_BOOTSTRAP_ATTEMPTS):
        try:
            version, latest, breaking = await _state(conn, schema)
        except DatabaseError as exc:
            if exc.sqlstate not in _NOT_THERE:
                raise MigrationError(f"cannot read {schema}.migrations: {exc}") from exc
            try:
                await _bootstrap(conn, schema)
            except DatabaseError as exc2:
                if exc2.sqlstate not in _CLASH:
                    raise MigrationError(f"cannot create schema {schema!r}: {exc2}") from exc2
                # Another process is creating it right now; let it finish, then look again.
                await anyio.sleep(0.05 + random.random() * 0.2 * (attempt + 1))
            continue
        if version < _MIN_SERVER_VERSION:
            raise MigrationError(
                f"PostgreSQL 12 or newer is required (server_version_num is {version})"
            )
        return latest, breaking
    raise MigrationError(f"could not create or read {schema}.migrations after several attempts")


async def _apply(
    conn: AsyncConn,
    schema: str,
    migration: sqlfiles.Migration,
    record: tuple[str, Params],
    *,
    announce: bool,
) -> bool:
    """Apply one migration file in one transaction whose first statement is ``record`` (the
    named query inserting its migrations row(s), and its parameters). Returns False when
    another process applied it first: the two collide on that row's primary key, and the
    loser counts it as done."""
    recorded = False
    try:
        with translate_errors():
            async with conn.transaction():
                await _run(conn, record[0], schema, record[1])
                recorded = True
                text = sqlfiles.render(migration.text, {"SCHEMA": schema})
                await fetch(conn, text, prepare=False)
                if announce:  # worker:migrate is graphile-worker's channel: its revisions only
                    news = {"migrationNumber": migration.revision, "breaking": migration.breaking}
                    await _run(conn, "migrate_announce", schema, (json.dumps(news),))
    except DatabaseError as exc:
        if not recorded and exc.sqlstate in _CLASH:
            logger.debug("revision %s was applied by another process", migration.revision)
            return False
        raise MigrationError(
            f"migration {migration.revision:06d} failed on schema {schema!r}: {exc}"
        ) from exc
    return True


def _record_graphile(first: int, last: int) -> tuple[str, Params]:
    return "migrate_record", (sorted(sqlfiles.BREAKING_REVISIONS), list(range(first, last + 1)))


async def _migrate_own(conn: AsyncConn, schema: str) -> list[int]:
    """Apply zodworker's own migrations, recorded in ``<schema>._zodworker_migrations``."""
    for attempt in range(_BOOTSTRAP_ATTEMPTS):
        try:
            with translate_errors():
                async with conn.transaction():
                    await _run(conn, "own_migrations_bootstrap", schema)
            break
        except DatabaseError as exc:
            if exc.sqlstate not in _CLASH or attempt == _BOOTSTRAP_ATTEMPTS - 1:
                raise MigrationError(
                    f"cannot create {schema}._zodworker_migrations: {exc}"
                ) from exc
            await anyio.sleep(0.05 + random.random() * 0.2)
    with translate_errors():
        async with conn.transaction():
            [row] = await _run(conn, "own_migrations_state", schema)
    current = row[0] if row[0] is not None else 0
    applied = []
    for migration in sqlfiles.own_migrations():
        record = ("own_migrations_record", (migration.revision,))
        if migration.revision > current and await _apply(
            conn, schema, migration, record, announce=False
        ):
            applied.append(migration.revision)
    return applied


async def _wait_for_revision(conn: AsyncConn, schema: str, revision: int) -> None:
    """Wait until another migrator (possibly a Node one, step by step) reaches ``revision``."""
    deadline = time.monotonic() + _BASELINE_WAIT_S
    while True:
        _, latest, _ = await _state(conn, schema)
        if latest is not None and latest >= revision:
            return
        if time.monotonic() > deadline:
            raise MigrationError(
                f"another process started migrating schema {schema!r} but has not reached "
                f"revision {revision} after {_BASELINE_WAIT_S:.0f}s (now at {latest})"
            )
        await anyio.sleep(0.1)


async def migrate(conn: AsyncConn, *, schema: str = DEFAULT_SCHEMA) -> MigrationResult:
    """Install or upgrade the schema ``schema`` on ``conn``'s database.

    ``conn`` must not be inside a transaction; each migration commits on its own. Safe to run
    from many processes at once, zodworker or graphile-worker.
    """
    if conn.info.transaction_status != TransactionStatus.IDLE:
        raise MigrationError("migrate() needs a connection that is not inside a transaction")
    known = sqlfiles.migrations()
    highest = known[-1].revision
    before, breaking = await _read_state(conn, schema)

    if breaking is not None and breaking > highest:
        raise IncompatibleSchemaError(before or breaking, breaking, highest)
    if before is not None and before > highest:
        logger.warning(
            "schema %r is at revision %s, newer than the %s this zodworker knows; it is not a "
            "breaking change, so continuing. Upgrade zodworker to stay compatible.",
            schema,
            before,
            highest,
        )
    if before is not None and before < BASELINE:
        raise UnsupportedRevisionError(before, BASELINE)

    applied: list[int] = []
    current = before or 0
    for migration in known:
        if migration.revision <= current:
            continue
        first = 1 if migration.revision == BASELINE else migration.revision
        record = _record_graphile(first, migration.revision)
        if await _apply(conn, schema, migration, record, announce=True):
            applied.append(migration.revision)
        elif migration.revision == BASELINE:
            await _wait_for_revision(conn, schema, BASELINE)
        current = migration.revision
    own_applied = await _migrate_own(conn, schema)
    if applied or own_applied:
        logger.info(
            "schema %r migrated to revision %s (applied %s; zodworker additions %s)",
            schema,
            current,
            applied,
            own_applied,
        )
    return MigrationResult(
        before=before, after=max(current, before or 0), applied=applied, own_applied=own_applied
    )


async def installed_revision(target: AsyncTarget, *, schema: str = DEFAULT_SCHEMA) -> int | None:
    """The graphile-worker schema revision installed in ``schema`` (None: not installed,
    so ``zodworker migrate`` is the next step). Reads only; creates nothing."""
    async with borrow(target) as conn:
        try:
            _, latest, _ = await _state(conn, schema)
        except DatabaseError as exc:
            if exc.sqlstate in _NOT_THERE:
                return None
            raise
    return latest


async def migrate_target(target: AsyncTarget, *, schema: str = DEFAULT_SCHEMA) -> MigrationResult:
    """:func:`migrate` on a connection borrowed from a pool (put in autocommit mode for the
    duration, then back as it was), or on the given connection."""
    if not isinstance(target, AsyncConnectionPool):
        return await migrate(target, schema=schema)
    async with borrow(target) as conn:
        autocommit = conn.autocommit  # a caller's pool may use either; put it back
        with translate_errors():
            await conn.set_autocommit(True)
        try:
            return await migrate(conn, schema=schema)
        finally:
            with translate_errors():
                await conn.set_autocommit(autocommit)


async def migrate_url(conninfo: str, schema: str = DEFAULT_SCHEMA) -> MigrationResult:
    """:func:`migrate` on a connection of its own to ``conninfo``."""
    with translate_errors():
        conn = await psycopg.AsyncConnection.connect(conninfo, autocommit=True)
    async with conn:
        return await migrate(conn, schema=schema)


async def drop_schema(conninfo: str, schema: str) -> None:
    """Drop ``schema`` with everything in it (test schemas), on a connection of its own."""
    with translate_errors():
        conn = await psycopg.AsyncConnection.connect(conninfo, autocommit=True)
    async with conn:
        await _run(conn, "drop_schema", schema)
