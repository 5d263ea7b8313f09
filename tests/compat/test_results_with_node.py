"""Results beside Node graphile-worker: a job of a task that keeps results, run by a Node
worker, is deleted as graphile-worker deletes any success and leaves no history row, so its
waiter is told the result is unavailable (not left waiting); a Node permanent failure is
still seen as one. Jobs zodworker runs next to it keep their results."""

from __future__ import annotations

import asyncio
from pathlib import Path

import psycopg
import pytest
from pydantic import BaseModel

from tests.support.graphile import GraphileWorker, graphile_worker, node_conninfo
from zodworker import JobFailed, JobHelpers, ResultUnavailable, TaskCatalog, ZodWorker, task

pytestmark = [pytest.mark.anyio, pytest.mark.node]

NODE_RUN_ONCE = """
import { runOnce } from "graphile-worker";
const [connectionString] = process.argv.slice(2);
await runOnce({
  connectionString,
  taskList: {
    resize: async () => ({ width: 1 }),
    refuse: async () => { throw new Error("node refused"); },
  },
});
"""


class Resize(BaseModel):
    url: str


class Resized(BaseModel):
    width: int


async def resize(payload: Resize, helpers: JobHelpers) -> Resized:
    return Resized(width=len(payload.url))


class Media(TaskCatalog):
    resize = task(Resize, resize, output=Resized)
    refuse = task(Resize, output=Resized, max_attempts=1)


@pytest.fixture(scope="module")
def gw() -> GraphileWorker:
    return graphile_worker()


async def test_jobs_node_runs_have_no_result_rows(
    gw: GraphileWorker, db_url: str, tmp_path: Path
) -> None:
    async with ZodWorker(catalog=Media(), database_url=db_url, producer_only=True) as producer:
        by_node = await producer.enqueue(Media.resize, Resize(url="s3://node"))
        refused = await producer.enqueue(Media.refuse, Resize(url="s3://no"))
        waits = [asyncio.ensure_future(h.result(timeout=60)) for h in (by_node, refused)]
        await asyncio.to_thread(gw.node_script, NODE_RUN_ONCE, node_conninfo(db_url))
        unavailable, failed = await asyncio.gather(*waits, return_exceptions=True)
        assert isinstance(unavailable, ResultUnavailable), unavailable
        assert isinstance(failed, JobFailed) and "node refused" in (failed.last_error or "")
        async with ZodWorker(catalog=Media(), database_url=db_url, handle_signals=False):
            ours = await producer.enqueue(Media.resize, Resize(url="s3://ours"))
            assert await ours.result(timeout=30) == Resized(width=len("s3://ours"))
    with psycopg.connect(db_url, autocommit=True) as conn:
        rows = conn.execute(
            "select job_id from graphile_worker._zodworker_job_history order by job_id"
        ).fetchall()
    assert rows == [(ours.id,)]
