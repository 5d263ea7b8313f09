"""Shared fixtures: one PostgreSQL server per run, a fresh database per test.

The server is chosen by ``tests.support.server.admin_conninfo``: ``TEST_DATABASE_URL``, else
testcontainers when a Docker engine answers, else the embedded PostgreSQL. A template
database is migrated once per run; each test gets its own clone of it, so tests never see
each other's jobs.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from tests.support.dburl import with_dbname
from tests.support.procs import Procs
from tests.support.server import admin_conninfo, server_kind
from zodworker.db import Store, migrate

_counter = itertools.count()


def pytest_report_header() -> str:
    return f"zodworker tests: PostgreSQL from {server_kind()}"


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"  # psycopg's async API needs asyncio


def _admin() -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(admin_conninfo(), autocommit=True)


def create_database(name: str, template: str | None = None) -> str:
    """Create database ``name`` (optionally from ``template``); return its URI."""
    with _admin() as conn:
        conn.execute(
            sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
        )
        if template is None:
            conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
        else:
            conn.execute(
                sql.SQL("create database {} template {}").format(
                    sql.Identifier(name), sql.Identifier(template)
                )
            )
    return with_dbname(admin_conninfo(), name)


def drop_database(name: str) -> None:
    with _admin() as conn:
        conn.execute(
            sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
        )


@pytest.fixture(scope="session")
def template_db() -> Iterator[str]:
    """Name of a database migrated to our latest revision, used as a clone template."""
    name = f"zw_template_{os.getpid()}"
    url = create_database(name)

    async def _migrate() -> None:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await migrate(conn)

    asyncio.run(_migrate())
    yield name
    drop_database(name)


@pytest.fixture
def empty_db_url() -> Iterator[str]:
    """URI of a brand-new empty database, dropped after the test."""
    name = f"zw_empty_{os.getpid()}_{next(_counter)}"
    yield create_database(name)
    drop_database(name)


@pytest.fixture
def db_url(template_db: str) -> Iterator[str]:
    """URI of a fresh, migrated database for this test, dropped afterwards."""
    name = f"zw_test_{os.getpid()}_{next(_counter)}"
    yield create_database(name, template=template_db)
    drop_database(name)


@pytest.fixture
async def conn(db_url: str) -> AsyncIterator[psycopg.AsyncConnection[tuple[object, ...]]]:
    """An autocommit async connection to this test's database."""
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as c:
        yield c


@pytest.fixture
def store() -> Store:
    return Store()


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    """Child processes started by the test (cwd tmp_path); the ones still running are
    killed at the end."""
    group = Procs(cwd=tmp_path)
    try:
        yield group
    finally:
        group.close()
