"""Node graphile-worker and zodworker workers running at the same time on one database."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import psycopg
import pytest

from tests.support.dbtools import wait_until
from tests.support.graphile import GraphileWorker, graphile_worker
from zodworker import JobHelpers, JobSpec, Store, WorkerOptions, WorkerPool

pytestmark = [pytest.mark.anyio, pytest.mark.node]

RUNS_TABLE = """
create table runs (
  n int not null,
  queue text,
  worker text not null,
  started_at timestamptz not null default clock_timestamp(),
  finished_at timestamptz
)
"""

# A graphile-worker pool running the same "record" task until the jobs table is empty.
NODE_WORKER = """
import { run } from "graphile-worker";
import pg from "pg";
const [connectionString, concurrency] = process.argv.slice(2);
const record = async (payload, helpers) => {
  await helpers.withPgClient(async (client) => {
    await client.query("insert into runs (n, queue, worker) values ($1, $2, 'node')",
      [payload.n, payload.queue ?? null]);
    await new Promise((resolve) => setTimeout(resolve, 3));
    await client.query(
      "update runs set finished_at = clock_timestamp()"
      + " where n = $1 and worker = 'node' and finished_at is null", [payload.n]);
  });
};
const runner = await run({
  connectionString, concurrency: Number(concurrency), noHandleSignals: true, pollInterval: 50,
  taskList: { record },
});
const probe = new pg.Client({ connectionString });
await probe.connect();
const deadline = Date.now() + 90_000;
while (Date.now() < deadline) {
  const { rows } = await probe.query(
    "select count(*)::int as n from graphile_worker._private_jobs");
  if (rows[0].n === 0) break;
  await new Promise((resolve) => setTimeout(resolve, 50));
}
await probe.end();
await runner.stop();
console.log("node worker done");
"""

NODE_ADD = """
import { makeWorkerUtils } from "graphile-worker";
const [connectionString, from, to] = process.argv.slice(2);
const utils = await makeWorkerUtils({ connectionString });
const specs = [];
for (let n = Number(from); n < Number(to); n++) {
  const queue = n % 3 === 0 ? null : "shared";
  specs.push({ identifier: "record", payload: { n, queue }, queueName: queue ?? undefined });
}
await utils.addJobs(specs);
await utils.release();
"""


async def record(payload: dict[str, Any], helpers: JobHelpers) -> None:
    n, queue = payload["n"], payload.get("queue")
    await helpers.query("insert into runs (n, queue, worker) values (%s, %s, 'python')", (n, queue))
    await asyncio.sleep(0.003)
    await helpers.query(
        "update runs set finished_at = clock_timestamp()"
        " where n = %s and worker = 'python' and finished_at is null",
        (n,),
    )


async def test_node_and_python_workers_share_a_named_queue(gw: GraphileWorker, db_url: str) -> None:
    total = 300
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        await conn.execute(RUNS_TABLE)
        # half the jobs come from Node, half from Python; two in three on one named queue
        gw.node_script(NODE_ADD, db_url, "0", str(total // 2))
        await Store().add_jobs(
            conn,
            [
                JobSpec(
                    identifier="record",
                    payload={"n": n, "queue": None if n % 3 == 0 else "shared"},
                    queue_name=None if n % 3 == 0 else "shared",
                )
                for n in range(total // 2, total)
            ],
        )

        options = WorkerOptions(
            connection=db_url, concurrency=4, poll_interval=0.05, handle_signals=False
        )
        async with WorkerPool({"record": record}, options):
            node = asyncio.create_task(
                asyncio.to_thread(gw.node_script, NODE_WORKER, db_url, "4", timeout=120)
            )

            async def drained() -> bool:
                cur = await conn.execute("select count(*) from graphile_worker._private_jobs")
                row = await cur.fetchone()
                return row is not None and row[0] == 0

            await wait_until(drained, within=90, what="both workers to drain the queue")
            proc = await node
        assert "node worker done" in proc.stdout

        cur = await conn.execute("select n, count(*) from runs group by n having count(*) <> 1")
        assert await cur.fetchall() == []  # every job ran exactly once...
        cur = await conn.execute("select count(distinct n) from runs")
        assert await cur.fetchone() == (total,)  # ...and none is missing
        cur = await conn.execute("select worker, count(*) from runs group by worker order by 1")
        by_worker: dict[str, int] = dict(await cur.fetchall())
        assert by_worker.get("node", 0) > 0 and by_worker.get("python", 0) > 0, by_worker

        cur = await conn.execute(
            "select started_at, finished_at, worker from runs where queue = 'shared'"
            " order by started_at"
        )
        shared = await cur.fetchall()
        assert len(shared) == sum(1 for n in range(total) if n % 3)
        overlaps = [(prev, nxt) for prev, nxt in itertools.pairwise(shared) if nxt[0] < prev[1]]
        assert overlaps == [], f"{len(overlaps)} overlapping runs in queue 'shared'"


@pytest.fixture(scope="module")
def gw() -> GraphileWorker:
    return graphile_worker()


NODE_ADD_START_RUN = """
import { makeWorkerUtils } from "graphile-worker";
const [connectionString] = process.argv.slice(2);
const utils = await makeWorkerUtils({ connectionString });
await utils.addJob("startRun", { id: "run_from_node" }, { queueName: "executions" });
await utils.addJob("startRun", { runId: 42 }, { queueName: "executions" });  // not a StartRun
await utils.release();
"""


async def test_a_node_added_job_runs_on_the_typed_client_with_a_validated_payload(
    gw: GraphileWorker, db_url: str
) -> None:
    from pydantic import BaseModel

    from zodworker import TaskCatalog, ZodWorker, task

    class StartRun(BaseModel):
        id: str

    received: list[StartRun] = []

    async def start_run(payload: StartRun, helpers: JobHelpers) -> None:
        received.append(payload)

    class Platform(TaskCatalog):
        startRun = task(StartRun, handler=start_run, queue_name="executions")

    async with ZodWorker(catalog=Platform(), database_url=db_url, poll_interval=0.05):
        gw.node_script(NODE_ADD_START_RUN, db_url)
        async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:

            async def settled() -> bool:
                cur = await conn.execute(
                    "select count(*) from graphile_worker._private_jobs where last_error is null"
                )
                row = await cur.fetchone()
                return bool(received) and row is not None and row[0] == 0

            await wait_until(settled, within=30, what="both Node jobs to be handled")
            cur = await conn.execute(
                "select attempts, max_attempts, last_error from graphile_worker._private_jobs"
            )
            [(attempts, max_attempts, last_error)] = await cur.fetchall()
    assert received == [StartRun(id="run_from_node")]
    assert attempts == max_attempts  # the invalid one failed for good, no retries
    assert "invalid payload" in last_error and "payload.id" in last_error
