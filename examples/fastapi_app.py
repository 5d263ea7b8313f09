"""A FastAPI service that writes runs and enqueues their jobs in the same transaction.

    DATABASE_URL=postgresql://... uvicorn examples.fastapi_app:app    # from the repository root

With no DATABASE_URL it uses the embedded PostgreSQL (``pip install 'zodworker[embedded]'``).
The process both serves HTTP and runs the jobs (``startRun``, ``performRunExecution``); a
bigger deployment would pass ``producer_only=True`` here and run workers elsewhere.

- ``POST /runs`` ``{"id"?, "execute_in_seconds"?, "notify"?}`` inserts a QUEUED run and
  enqueues ``startRun`` for it in one transaction; with ``notify`` it also enqueues a
  ``scheduleEmail``, and an invalid address fails the request (422) with neither the run
  nor any job written. Returns ``{"run_id", "job_id"}``.
- ``startRun`` marks the run STARTED and schedules ``performRunExecution`` (key
  ``job_run:EXECUTE_JOB:<id>``) ``execute_in_seconds`` later, in one transaction;
  ``performRunExecution`` marks it COMPLETED.
- ``POST /runs/{id}/cancel`` removes the run's pending execution and marks it CANCELED,
  in one transaction.
- ``GET /runs/{id}`` shows the run.
- ``/admin/jobs/`` is the dashboard (``zodworker.web``), read-only, on the client's pool.

The wiring is :mod:`zodworker.integrations.fastapi`: ``lifespan(client)`` runs the client for
the app's lifetime, ``Tx`` gives each endpoint a transaction whose ``enqueue`` adds jobs in
it (committed before the response is sent, rolled back when the endpoint raises), and
``mount_dashboard`` mounts the dashboard.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated

import psycopg
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from psycopg.rows import dict_row
from pydantic import BaseModel, Field

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for the catalog package

from catalog import PerformRunExecution, Platform, StartRun, platform_with_handlers
from zodworker import JobHelpers, PayloadValidationError, ZodWorker
from zodworker.integrations.fastapi import Transaction, lifespan, mount_dashboard, transaction

SCHEMA = """
create table if not exists runs (
    id text primary key,
    status text not null default 'QUEUED',
    execute_in_seconds double precision not null default 0,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
)
"""


def execute_job_key(run_id: str) -> str:
    """The job key of a run's execution (``TASK_OPTIONS["performRunExecution"].job_key``)."""
    return f"job_run:EXECUTE_JOB:{run_id}"


# ------------------------------------------------------------------------- the API


class CreateRun(BaseModel):
    id: str | None = Field(default=None, min_length=1, max_length=200)
    execute_in_seconds: float = Field(default=0, ge=0)
    notify: str | None = None
    """An email address to tell when the run was accepted."""


class RunCreated(BaseModel):
    run_id: str
    job_id: int


class RunCanceled(BaseModel):
    run_id: str
    status: str
    removed_job_id: int | None


class RunView(BaseModel):
    id: str
    status: str
    created_at: datetime
    updated_at: datetime


def build_client() -> ZodWorker:
    """A client that runs the run tasks in this process, on a pool of its own (from
    DATABASE_URL, else the embedded server) that the endpoints share."""

    async def start_run(payload: StartRun, helpers: JobHelpers) -> None:
        async with client.connections.connection() as conn, conn.transaction():
            cur = await conn.execute(
                "update runs set status = 'STARTED', updated_at = now()"
                " where id = %s and status = 'QUEUED'"
                " returning now() + make_interval(secs => execute_in_seconds)",
                (payload.id,),
            )
            row = await cur.fetchone()
            if row is None:
                helpers.logger.info("run %s is not queued any more; not starting it", payload.id)
                return
            await client.enqueue(
                Platform.performRunExecution,
                PerformRunExecution(id=payload.id),
                run_at=row[0],
                tx=conn,
            )

    async def perform_run_execution(payload: PerformRunExecution, helpers: JobHelpers) -> None:
        async with client.connections.connection() as conn, conn.transaction():
            await conn.execute(
                "update runs set status = 'COMPLETED', updated_at = now()"
                " where id = %s and status = 'STARTED'",
                (payload.id,),
            )

    catalog = platform_with_handlers(startRun=start_run, performRunExecution=perform_run_execution)
    client = ZodWorker(
        catalog=catalog,
        name="fastapi-app",
        database_url=os.environ.get("DATABASE_URL"),
        concurrency=4,
        handle_signals=False,  # uvicorn handles them; the lifespan stops the client
    )
    return client


client = build_client()
Tx = Annotated[Transaction, transaction(client)]  # committed before the response is sent


@asynccontextmanager
async def create_tables(app: FastAPI) -> AsyncIterator[None]:
    async with client.connections.connection() as conn:
        await conn.execute(SCHEMA)
    yield


# initializes the client (migrating, running its tasks) around the app, then stops it
app = FastAPI(title="zodworker example", lifespan=lifespan(client, then=create_tables))
mount_dashboard(app, client, "/admin/jobs", read_only=True)


@app.exception_handler(PayloadValidationError)
async def invalid_payload(request: Request, exc: PayloadValidationError) -> JSONResponse:
    """A job payload the request built is invalid: nothing was written (rolled back)."""
    return JSONResponse(
        status_code=422, content={"detail": str(exc), "field": exc.field, "task": exc.task}
    )


@app.post("/runs")
async def create_run(body: CreateRun, tx: Tx) -> RunCreated:
    run_id = body.id or f"run_{uuid.uuid4().hex[:12]}"
    try:
        await tx.conn.execute(
            "insert into runs (id, execute_in_seconds) values (%s, %s)",
            (run_id, body.execute_in_seconds),
        )
    except psycopg.errors.UniqueViolation:
        raise HTTPException(409, f"run {run_id} exists") from None
    job = await tx.enqueue(Platform.startRun, StartRun(id=run_id))
    if body.notify is not None:
        # by name with plain data: the client validates it against ScheduleEmail, and a bad
        # address raises PayloadValidationError, rolling back the run and startRun with it
        email = {"to": body.notify, "subject": f"Run {run_id} accepted", "template": "run"}
        await tx.enqueue("scheduleEmail", email)
    return RunCreated(run_id=run_id, job_id=job.id)


@app.post("/runs/{run_id}/cancel")
async def cancel_run(run_id: str, tx: Tx) -> RunCanceled:
    cur = await tx.conn.execute(
        "update runs set status = 'CANCELED', updated_at = now()"
        " where id = %s and status in ('QUEUED', 'STARTED') returning status",
        (run_id,),
    )
    if await cur.fetchone() is None:
        found = await tx.conn.execute("select status from runs where id = %s", (run_id,))
        row = await found.fetchone()
        if row is None:
            raise HTTPException(404, f"no run {run_id}")
        raise HTTPException(409, f"run {run_id} is {row[0]}")
    removed = await client.dequeue(execute_job_key(run_id), tx=tx.conn)
    return RunCanceled(
        run_id=run_id, status="CANCELED", removed_job_id=removed.id if removed else None
    )


@app.get("/runs/{run_id}")
async def get_run(run_id: str, tx: Tx) -> RunView:
    cur = tx.conn.cursor(row_factory=dict_row)
    await cur.execute(
        "select id, status, created_at, updated_at from runs where id = %s", (run_id,)
    )
    row = await cur.fetchone()
    if row is None:
        raise HTTPException(404, f"no run {run_id}")
    return RunView(**row)
