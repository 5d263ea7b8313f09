"""Enqueue typed jobs from synchronous code (Django, Flask, scripts): no event loop.

    DATABASE_URL=postgresql://... python examples/sync_producer.py

With no DATABASE_URL it uses the embedded PostgreSQL (``pip install 'zodworker[embedded]'``).
The database must be migrated already (``zodworker migrate``, or any worker that started).
Jobs are added on your own ``psycopg.Connection`` and commit or roll back with it; a
producer-only client needs no ``initialize()``. The jobs stay queued for a worker to run.
"""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for the catalog package

from catalog import IndexEndpoint, Platform, StartRun
from zodworker import ZodWorker, resolve_connection


def count_jobs(conn: psycopg.Connection[Any], run_id: str) -> int:
    row = conn.execute(
        "select count(*) from graphile_worker._private_jobs where payload->>'id' = %s", (run_id,)
    ).fetchone()
    return int(row[0]) if row else 0


def main() -> None:
    url = resolve_connection(os.environ.get("DATABASE_URL"))
    client = ZodWorker(catalog=Platform(), producer_only=True)

    with psycopg.connect(url) as conn:
        migrated = conn.execute("select to_regclass('graphile_worker.jobs')").fetchone()
        if not migrated or migrated[0] is None:
            raise SystemExit("the database is not migrated: run `zodworker migrate` first")
        conn.commit()

        with conn.transaction():
            conn.execute("create temporary table audit (run_id text)")  # your own writes
            conn.execute("insert into audit values ('run_sync_1')")
            started = client.enqueue_sync(Platform.startRun, StartRun(id="run_sync_1"), tx=conn)
            later = client.enqueue_sync(
                Platform.indexEndpoint,
                IndexEndpoint(id="ep_sync_1", source="API", reason="deploy"),
                tx=conn,
                run_at=datetime.now(UTC) + timedelta(minutes=5),
                priority=2,
            )
            by_name = client.enqueue_sync("deliverEvent", {"id": "evt_sync_1"}, tx=conn)
        for job in (started, later, by_name):
            print(f"committed: {job.task_identifier} job {job.id} (queue {job.queue_name})")

        try:
            with conn.transaction():
                client.enqueue_sync(Platform.startRun, StartRun(id="run_sync_2"), tx=conn)
                raise RuntimeError("the request failed after enqueueing")
        except RuntimeError as exc:
            print(f"rolled back: {exc}")

        print(f"jobs for run_sync_1: {count_jobs(conn, 'run_sync_1')}")
        print(f"jobs for run_sync_2: {count_jobs(conn, 'run_sync_2')}")
        conn.commit()


if __name__ == "__main__":
    main()
