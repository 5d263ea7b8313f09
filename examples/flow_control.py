"""Concurrency and rate limits per tenant, fair across tenants, changed at run time.

    DATABASE_URL=postgresql://... python examples/flow_control.py

With no DATABASE_URL it uses the embedded PostgreSQL (``pip install 'zodworker[embedded]'``).
Tenant "big" enqueues 40 exports and tenant "small" 4, after them; each tenant may run 2
exports at once, and every export calls an API allowed 50 calls a second whatever the
tenant. The small tenant's exports start among the first, not after the big backlog. Then an
operator lets each tenant run 4 at once, which the worker uses at its next fetch.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import psycopg
from pydantic import BaseModel

from zodworker import Limit, Rate, TaskCatalog, ZodWorker, resolve_connection, task
from zodworker.admin import Admin

running: dict[str, int] = {}
most: dict[str, int] = {}
order: list[str] = []
goal: dict[str, Any] = {"started": 0, "event": asyncio.Event()}


class Export(BaseModel):
    tenant: str
    n: int


async def export(payload: Export, helpers: object) -> None:
    tenant = payload.tenant
    order.append(tenant)
    if len(order) >= goal["started"]:
        goal["event"].set()
    running[tenant] = running.get(tenant, 0) + 1
    most[tenant] = max(most.get(tenant, 0), running[tenant])
    await asyncio.sleep(0.1)
    running[tenant] -= 1


# at most 50 calls a second to the API, whoever calls it: a limit shared by name
api = Limit("reports-api", rate=Rate(50, per=1.0))


class Reports(TaskCatalog):
    # the task's own limit, per tenant (its first limit: tenants are served in turn)
    export = task(Export, export, concurrency_limit=2, limit_key=lambda p: p.tenant, limits=[api])


async def wait_for(started: int) -> None:
    """Until ``started`` exports have started (at most 30 s)."""
    goal["started"], goal["event"] = started, asyncio.Event()
    if len(order) < started:
        await asyncio.wait_for(goal["event"].wait(), 30.0)


async def main() -> None:
    url = resolve_connection(os.environ.get("DATABASE_URL"))  # None: the embedded server
    client = ZodWorker(catalog=Reports(), database_url=url, concurrency=8)
    async with client, await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await client.enqueue_many([(Reports.export, Export(tenant="big", n=n)) for n in range(40)])
        await client.enqueue_many([(Reports.export, Export(tenant="small", n=n)) for n in range(4)])
        await wait_for(44)
        print(
            f"small's exports started at places {[i for i, t in enumerate(order) if t == 'small']}"
        )
        print(f"most at once per tenant: {dict(sorted(most.items()))}")

        admin = Admin()
        await admin.set_limit(conn, "task:export", concurrency=4)  # holds until reset
        most.clear()
        await client.enqueue_many([(Reports.export, Export(tenant="big", n=n)) for n in range(12)])
        await wait_for(56)
        print(f"after the change, most at once: {most['big']}")
        [info] = [i for i in await admin.limits(conn) if i.name == "task:export"]
        print(f"task:export concurrency {info.concurrency} (declared {info.declared_concurrency})")
        await admin.reset_limit(conn, "task:export")


if __name__ == "__main__":
    asyncio.run(main())
