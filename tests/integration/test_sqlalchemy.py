"""Enqueueing in an SQLAlchemy transaction (psycopg 3 under it, async and sync engines):
the job commits with the session's other writes and vanishes with its rollback."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from pydantic import BaseModel
from sqlalchemy import create_engine, text
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import Session

from zodworker import ConfigError, TaskCatalog, ZodWorker, task

pytestmark = pytest.mark.anyio


class Order(BaseModel):
    id: int


class Shop(TaskCatalog):
    ship = task(Order)


def _sa_url(url: str) -> str:
    return url.replace("postgresql://", "postgresql+psycopg://", 1)


def _state(url: str) -> tuple[list[int], list[int]]:
    """Order ids in the orders table, and order ids of the ship jobs."""
    with psycopg.connect(url, autocommit=True) as conn:
        orders = [r[0] for r in conn.execute("select id from orders order by id").fetchall()]
        jobs = conn.execute(
            "select (payload->>'id')::int from graphile_worker._private_jobs order by 1"
        ).fetchall()
    return orders, [r[0] for r in jobs]


class Boom(Exception):
    pass


async def test_async_sessions_and_connections_enqueue_in_their_transaction(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("create table orders (id int primary key)")
    client = ZodWorker(catalog=Shop(), database_url=db_url, producer_only=True)
    engine = create_async_engine(_sa_url(db_url))
    try:
        async with AsyncSession(engine) as session, session.begin():
            await session.execute(text("insert into orders values (1)"))
            await client.enqueue(Shop.ship, Order(id=1), tx=session)
        with pytest.raises(Boom):
            async with AsyncSession(engine) as session, session.begin():
                await session.execute(text("insert into orders values (2)"))
                await client.enqueue(Shop.ship, Order(id=2), tx=session)
                raise Boom
        async with engine.begin() as conn:  # a Core connection
            await conn.execute(text("insert into orders values (3)"))
            handle = await client.enqueue(Shop.ship, Order(id=3), tx=conn)
            assert handle.payload == {"id": 3}
    finally:
        await engine.dispose()
    assert _state(db_url) == ([1, 3], [1, 3])


def test_sync_sessions_and_connections_enqueue_in_their_transaction(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("create table orders (id int primary key)")
    client = ZodWorker(catalog=Shop(), database_url=db_url, producer_only=True)
    engine = create_engine(_sa_url(db_url))
    try:
        with Session(engine) as session, session.begin():
            session.execute(text("insert into orders values (1)"))
            client.enqueue_sync(Shop.ship, Order(id=1), tx=session)
        with pytest.raises(Boom), Session(engine) as session, session.begin():
            session.execute(text("insert into orders values (2)"))
            client.enqueue_sync(Shop.ship, Order(id=2), tx=session)
            raise Boom
        with engine.begin() as conn:
            conn.execute(text("insert into orders values (3)"))
            client.enqueue_sync(Shop.ship, Order(id=3), tx=conn)
    finally:
        engine.dispose()
    assert _state(db_url) == ([1, 3], [1, 3])


async def test_something_else_as_tx_is_refused_before_any_sql(db_url: str) -> None:
    client = ZodWorker(catalog=Shop(), database_url=db_url, producer_only=True)
    not_a_connection: Any = object()
    with pytest.raises(ConfigError, match="tx: got object; pass a psycopg AsyncConnection"):
        await client.enqueue(Shop.ship, Order(id=1), tx=not_a_connection)
    engine = create_engine(_sa_url(db_url))
    try:
        with Session(engine) as session, pytest.raises(ConfigError, match="enqueue_sync"):
            await client.enqueue(Shop.ship, Order(id=1), tx=session)  # type: ignore[arg-type]
    finally:
        engine.dispose()
