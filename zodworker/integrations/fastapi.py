"""FastAPI (and Starlette): run a client for the app's lifetime, give endpoints a
transaction that enqueues with their writes, and mount the dashboard.

::

    from typing import Annotated
    from fastapi import FastAPI
    from zodworker.integrations.fastapi import Transaction, lifespan, mount_dashboard, transaction

    client = ZodWorker(catalog=Platform(), database_url=url)
    app = FastAPI(lifespan=lifespan(client))
    Tx = Annotated[Transaction, transaction(client)]
    mount_dashboard(app, client, "/admin/jobs", read_only=True)


    @app.post("/runs")
    async def create_run(tx: Tx) -> dict[str, int]:
        await tx.conn.execute("insert into runs (id) values (%s)", (run_id,))
        handle = await tx.enqueue(Platform.startRun, StartRun(id=run_id))
        return {"job_id": handle.id}  # committed, run row and job together

The transaction commits when the endpoint returns and before the response is sent (the
dependency's ``scope="function"``), so a response never reports a job whose commit failed;
an exception from the endpoint (``HTTPException`` included) rolls both back.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from fastapi import Depends

from ..client import ZodWorker
from ..db.adapt import transaction as open_transaction
from ..db.rows import AsyncConn
from ..results import JobHandle
from ..web import create_app

__all__ = ["Transaction", "lifespan", "mount_dashboard", "transaction"]

Lifespan = Callable[[Any], AbstractAsyncContextManager[Any]]


def lifespan(client: ZodWorker, then: Lifespan | None = None) -> Lifespan:
    """An app lifespan that initializes ``client`` at startup (migrating, and running its
    tasks unless it is producer-only) and stops it at shutdown, around the app's own
    lifespan ``then`` when given."""

    @asynccontextmanager
    async def run(app: Any) -> AsyncIterator[Any]:
        async with client:
            if then is None:
                yield None
            else:
                async with then(app) as state:
                    yield state

    return run


class Transaction:
    """One request's transaction: ``conn`` (a psycopg ``AsyncConnection`` in it) and
    :meth:`enqueue`, which adds jobs in it."""

    __slots__ = ("client", "conn")

    def __init__(self, client: ZodWorker, conn: AsyncConn) -> None:
        self.client = client
        self.conn = conn

    async def enqueue(self, task: Any, payload: Any, **options: Any) -> JobHandle[Any]:
        """``client.enqueue(task, payload, tx=<this transaction>, **options)``."""
        handle: JobHandle[Any] = await self.client.enqueue(task, payload, tx=self.conn, **options)
        return handle


def transaction(client: ZodWorker) -> Any:
    """A dependency (``Annotated[Transaction, transaction(client)]``): a connection from
    the client's pool in a transaction, committed once the endpoint returns, before the
    response is sent; rolled back when it raises."""

    async def request_transaction() -> AsyncIterator[Transaction]:
        async with open_transaction(client.connections) as conn:
            yield Transaction(client, conn)

    return Depends(request_transaction, scope="function")


def mount_dashboard(app: Any, client: ZodWorker, path: str = "/admin/jobs", **options: Any) -> None:
    """Mount the dashboard (:func:`zodworker.web.create_app`) at ``path``, on the client's
    pool and schema (looked up per request, so mounting before startup is fine);
    ``options`` as for ``create_app`` (``read_only``, ``token``, ``basic_auth``...)."""
    app.mount(path, create_app(lambda: client.connections, schema=client.schema, **options))
