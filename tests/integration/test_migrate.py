"""Migrations against a real PostgreSQL: fresh installs, upgrades, refusals, concurrency."""

from __future__ import annotations

import logging

import anyio
import psycopg
import pytest
from psycopg import sql

from tests.support.reference import graphile_objects, reference_schema
from tests.support.schema_snapshot import diff, snapshot
from zodworker import (
    IncompatibleSchemaError,
    MigrationError,
    Store,
    UnsupportedRevisionError,
    latest_revision,
    migrate,
)
from zodworker.db.sqlfiles import BREAKING_REVISIONS, own_migrations

OWN_REVISIONS = [m.revision for m in own_migrations()]  # zodworker's own tables

pytestmark = pytest.mark.anyio

AsyncConn = psycopg.AsyncConnection[tuple[object, ...]]


async def _connect(url: str) -> AsyncConn:
    return await psycopg.AsyncConnection.connect(url, autocommit=True)


async def _migration_rows(conn: AsyncConn, schema: str) -> list[tuple[object, ...]]:
    cur = await conn.execute(
        sql.SQL("select id, breaking from {}.migrations order by id").format(sql.Identifier(schema))
    )
    return await cur.fetchall()


def _expected_rows(upto: int) -> list[tuple[object, ...]]:
    return [(i, i in BREAKING_REVISIONS) for i in range(1, upto + 1)]


@pytest.mark.embedded_smoke
async def test_fresh_database_gets_every_revision_recorded(empty_db_url: str) -> None:
    async with await _connect(empty_db_url) as conn:
        result = await migrate(conn)
        assert (result.before, result.after, result.applied) == (None, 20, [19, 20])
        assert result.own_applied == OWN_REVISIONS
        assert latest_revision() == 20
        assert await _migration_rows(conn, "graphile_worker") == _expected_rows(20)
        again = await migrate(conn)
        assert (again.before, again.after, again.applied) == (20, 20, [])


async def test_migration_announces_itself_on_worker_migrate(empty_db_url: str) -> None:
    async with await _connect(empty_db_url) as listener, await _connect(empty_db_url) as conn:
        await listener.execute('listen "worker:migrate"')
        await migrate(conn)
        payloads = []
        async for note in listener.notifies(timeout=5, stop_after=2):
            payloads.append(note.payload)
        assert payloads == [
            '{"migrationNumber": 19, "breaking": true}',
            '{"migrationNumber": 20, "breaking": false}',
        ]


@pytest.mark.parametrize(
    "schema", ["zw_custom", 'Mixed Case "quoted"; drop table x --', "ünïcode schema"]
)
async def test_any_schema_name_is_quoted_safely(empty_db_url: str, schema: str) -> None:
    async with await _connect(empty_db_url) as conn:
        await migrate(conn, schema=schema)
        assert await _migration_rows(conn, schema) == _expected_rows(20)
        job = await Store(schema).add_job(conn, "task", {"n": 1}, queue_name="q", job_key="k")
        assert (job.task_identifier, job.queue_name, job.payload) == ("task", "q", {"n": 1})
        cur = await conn.execute(
            "select count(*) from pg_namespace where nspname = any(%s)",
            (["graphile_worker", schema],),
        )
        assert await cur.fetchone() == (1,)  # only the custom schema exists


async def test_revision_19_database_is_upgraded_to_20(empty_db_url: str) -> None:
    async with await _connect(empty_db_url) as conn:
        await migrate(conn)
        await conn.execute("delete from graphile_worker.migrations where id = 20")
        result = await migrate(conn)
        assert (result.before, result.applied) == (19, [20])


async def test_newer_breaking_revision_is_refused(db_url: str) -> None:
    async with await _connect(db_url) as conn:
        await conn.execute(
            "insert into graphile_worker.migrations (id, breaking) values (21, false)"
        )
        await conn.execute(
            "insert into graphile_worker.migrations (id, breaking) values (22, true)"
        )
        with pytest.raises(IncompatibleSchemaError) as info:
            await migrate(conn)
        assert info.value.exit_code == 57
        assert (info.value.latest, info.value.latest_breaking, info.value.supported) == (22, 22, 20)


async def test_newer_non_breaking_revision_warns_and_continues(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with await _connect(db_url) as conn:
        await conn.execute(
            "insert into graphile_worker.migrations (id, breaking) values (21, false)"
        )
        with caplog.at_level(logging.WARNING, logger="zodworker.migrate"):
            result = await migrate(conn)
        assert result.applied == []
        assert any("revision 21" in r.getMessage() for r in caplog.records)


async def test_old_revision_is_refused_with_upgrade_advice(empty_db_url: str) -> None:
    async with await _connect(empty_db_url) as conn:
        await conn.execute(
            "create schema graphile_worker;"
            " create table graphile_worker.migrations(id int primary key,"
            " ts timestamptz default now() not null);"
            " insert into graphile_worker.migrations (id) select generate_series(1, 10)"
        )
        with pytest.raises(UnsupportedRevisionError, match="graphile-worker"):
            await migrate(conn)
        # the missing "breaking" column was added and flagged, as graphile-worker does
        assert await _migration_rows(conn, "graphile_worker") == _expected_rows(10)


async def test_migrate_refuses_a_connection_inside_a_transaction(db_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(db_url) as conn:
        await conn.execute("select 1")
        with pytest.raises(MigrationError, match="transaction"):
            await migrate(conn)


@pytest.mark.embedded_smoke
async def test_eight_concurrent_migrators_end_in_one_correct_schema(empty_db_url: str) -> None:
    results = []
    conns = [await _connect(empty_db_url) for _ in range(8)]
    try:

        async def one(conn: AsyncConn) -> None:
            results.append(await migrate(conn))

        async with anyio.create_task_group() as tg:
            for conn in conns:
                tg.start_soon(one, conn)
        applied = sorted(rev for r in results for rev in r.applied)
        assert applied == [19, 20]  # each revision applied by exactly one of them
        assert sorted(rev for r in results for rev in r.own_applied) == OWN_REVISIONS
        assert all(r.after == 20 for r in results)
        assert await _migration_rows(conns[0], "graphile_worker") == _expected_rows(20)
    finally:
        for conn in conns:
            await conn.close()
    with psycopg.connect(empty_db_url) as sync_conn:
        ours = snapshot(sync_conn, "graphile_worker")
    assert diff(reference_schema(), graphile_objects(ours)) == []
