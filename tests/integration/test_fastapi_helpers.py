"""zodworker.integrations.fastapi on a small app over ASGI: the lifespan runs the client,
an endpoint's transaction commits its writes and its jobs before the response is sent and
rolls both back when the endpoint raises, and the dashboard mounts on the client's pool."""

from __future__ import annotations

from typing import Any

import httpx
import psycopg
import pytest
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

from zodworker import LifecycleError, TaskCatalog, ZodWorker, task
from zodworker.integrations.fastapi import Transaction, lifespan, mount_dashboard, transaction

pytestmark = pytest.mark.anyio


class Order(BaseModel):
    id: int


class Shop(TaskCatalog):
    ship = task(Order)


def _count(url: str, query: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(query).fetchone()
    return int(row[0]) if row else 0


async def test_an_endpoints_writes_and_jobs_commit_together_before_the_response(
    db_url: str,
) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("create table orders (id int primary key)")
    client = ZodWorker(catalog=Shop(), database_url=db_url, producer_only=True)
    app = FastAPI(lifespan=lifespan(client))
    in_transaction = transaction(client)  # Annotated[Transaction, ...] at module level
    mount_dashboard(app, client, "/admin/jobs", read_only=True)

    @app.post("/orders/{order_id}")
    async def order(
        order_id: int, tx: Transaction = in_transaction, fail: bool = False
    ) -> dict[str, Any]:
        await tx.conn.execute("insert into orders values (%s)", (order_id,))
        handle = await tx.enqueue(Shop.ship, Order(id=order_id))
        if fail:
            raise HTTPException(409, "refused after writing")
        return {"job_id": handle.id}

    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://shop") as http,
    ):
        assert not client.connections.closed  # the lifespan initialized the client
        made = await http.post("/orders/1")
        assert made.status_code == 200, made.text
        # the response came after the commit: both rows are visible to anyone at once
        assert _count(db_url, "select count(*) from orders") == 1
        assert _count(db_url, "select count(*) from graphile_worker._private_jobs") == 1
        refused = await http.post("/orders/2", params={"fail": True})
        assert refused.status_code == 409
        assert _count(db_url, "select count(*) from orders") == 1  # rolled back, both
        assert _count(db_url, "select count(*) from graphile_worker._private_jobs") == 1
        page = await http.get("/admin/jobs/jobs")
        assert page.status_code == 200 and "ship" in page.text
    with pytest.raises(LifecycleError):  # stopped with the app
        _ = client.connections
