"""zodworker and the real graphile-worker 0.18 (from npm) on one database."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.support.dbtools import lock_job, run_while_lock_in_flight
from tests.support.graphile import GraphileWorker, graphile_worker
from tests.support.reference import graphile_objects, reference_schema
from tests.support.schema_snapshot import diff, snapshot
from zodworker import Job, Store, migrate
from zodworker.db import sqlfiles

pytestmark = [pytest.mark.anyio, pytest.mark.node]

AsyncConn = psycopg.AsyncConnection[Any]
SCHEMA = "graphile_worker"


@pytest.fixture(scope="module")
def gw() -> GraphileWorker:
    return graphile_worker()


def _state(url: str, schema: str = SCHEMA) -> tuple[dict[str, Any], list[tuple[Any, ...]]]:
    """graphile-worker's part of the schema and its migrations rows, with timestamps."""
    with psycopg.connect(url, autocommit=True) as conn:
        snap = graphile_objects(snapshot(conn, schema))
        rows = conn.execute(
            psycopg.sql.SQL("select id, ts, breaking from {}.migrations order by id").format(
                psycopg.sql.Identifier(schema)
            )
        ).fetchall()
    return snap, rows


async def test_a_graphile_migrated_database_is_used_as_is(
    gw: GraphileWorker, empty_db_url: str
) -> None:
    gw.schema_only(empty_db_url, SCHEMA)
    before = _state(empty_db_url)
    async with await psycopg.AsyncConnection.connect(empty_db_url, autocommit=True) as conn:
        result = await migrate(conn)
    assert (result.before, result.after, result.applied) == (20, 20, [])
    assert result.own_applied == [m.revision for m in sqlfiles.own_migrations()]  # ours
    assert _state(empty_db_url) == before


async def test_b_graphile_worker_finds_nothing_to_do_and_runs_our_job(
    gw: GraphileWorker, empty_db_url: str, tmp_path: Path
) -> None:
    async with await psycopg.AsyncConnection.connect(empty_db_url, autocommit=True) as conn:
        await migrate(conn)
        before = _state(empty_db_url)
        proc = gw.schema_only(empty_db_url, SCHEMA)
        assert _state(empty_db_url) == before, proc.stdout

        payload = {"hello": "from python", "n": [1, 2.5, None], "ü": True}
        job = await Store().add_job(conn, "record", payload, queue_name="py-queue", priority=3)

    out = tmp_path / "received.jsonl"
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "record.mjs").write_text(
        "import { appendFileSync } from 'node:fs';\n"
        "export default async (payload, helpers) => {\n"
        "  appendFileSync(process.env.RECORD_FILE,\n"
        "    JSON.stringify({ id: helpers.job.id, payload, queue: helpers.job.job_queue_id })\n"
        "    + '\\n');\n"
        "};\n"
    )
    gw.run_once(empty_db_url, SCHEMA, tasks, env={"RECORD_FILE": str(out)})
    [line] = out.read_text().splitlines()
    assert json.loads(line) == {"id": str(job.id), "payload": payload, "queue": job.job_queue_id}
    with psycopg.connect(empty_db_url) as conn:
        assert conn.execute("select count(*) from graphile_worker._private_jobs").fetchone() == (0,)


def test_c_our_schema_equals_graphile_workers(gw: GraphileWorker, db_url: str) -> None:
    """Against the checked-in dump and against a live graphile-worker install."""
    gw.schema_only(db_url, "gw_live")
    with psycopg.connect(db_url, autocommit=True) as conn:
        ours = graphile_objects(snapshot(conn, SCHEMA))
        live = snapshot(conn, "gw_live")
    assert diff(reference_schema(), ours, labels=("graphile-worker", "zodworker")) == []
    assert diff(live, ours, labels=("graphile-worker", "zodworker")) == []


async def test_a_job_added_from_node_is_read_back_intact(gw: GraphileWorker, db_url: str) -> None:
    script = """
import { makeWorkerUtils } from "graphile-worker";
const utils = await makeWorkerUtils({ connectionString: process.argv[2] });
try {
  const job = await utils.addJob("startRun", { id: "run_1", n: 7 }, {
    queueName: "executions", maxAttempts: 13, jobKey: "start:run_1", priority: 2,
    runAt: new Date("2030-01-01T00:00:00Z"), flags: ["slow"],
  });
  console.log(JSON.stringify({ id: job.id }));
} finally {
  await utils.release();
}
"""
    proc = gw.node_script(script, db_url)
    job_id = int(json.loads(proc.stdout.strip().splitlines()[-1])["id"])
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        job = await Store().get_job(conn, job_id)
    assert job is not None
    assert (job.task_identifier, job.payload, job.queue_name, job.max_attempts) == (
        "startRun",
        {"id": "run_1", "n": 7},
        "executions",
        13,
    )
    assert (job.key, job.priority, job.flags, job.run_at.isoformat()) == (
        "start:run_1",
        2,
        {"slow": True},
        "2030-01-01T00:00:00+00:00",
    )


async def test_store_never_returns_null_even_on_graphile_workers_add_job(
    gw: GraphileWorker, empty_db_url: str
) -> None:
    """On a schema installed by graphile-worker, its add_job loses the lock race (#580):
    it returns null. The store's add path still returns the job."""
    gw.schema_only(empty_db_url, SCHEMA)
    store = Store()
    async with await psycopg.AsyncConnection.connect(empty_db_url, autocommit=True) as setup:
        old = await store.add_job(setup, "t", {"v": 1}, job_key="k")

        async def raw_add(conn: AsyncConn) -> object:
            cur = await conn.execute("select (graphile_worker.add_job('t', job_key => 'k')).id")
            row = await cur.fetchone()
            return None if row is None else row[0]

        assert await run_while_lock_in_flight(empty_db_url, old.id, raw_add) is None

        again = await store.add_job(setup, "t", {"v": 2}, job_key="k2")
        new = await run_while_lock_in_flight(
            empty_db_url, again.id, lambda c: store.add_job(c, "t", {"v": 3}, job_key="k2")
        )
        assert isinstance(new, Job)
        assert (new.key, new.payload) == ("k2", {"v": 3})
        assert new.id != again.id
        await lock_job(setup, new.id)  # the store's job is a real, lockable row
