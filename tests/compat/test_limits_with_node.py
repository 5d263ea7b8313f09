"""Limited jobs beside Node graphile-worker: a Node worker given ``forbiddenFlags:
["zw:limited"]`` (the documented setting) runs the other jobs and leaves limited ones to
zodworker, which then runs them under their limits."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.support.graphile import GraphileWorker, graphile_worker, node_conninfo
from zodworker import LIMITED_FLAG, JobHelpers, JobSpec, Limit, Store, run_once

pytestmark = [pytest.mark.anyio, pytest.mark.node]

NODE_RUN_ONCE = """
import { appendFileSync } from "node:fs";
import { runOnce } from "graphile-worker";
const [connectionString, file, flags] = process.argv.slice(2);
await runOnce({
  connectionString,
  forbiddenFlags: JSON.parse(flags),
  taskList: { record: async (payload) => appendFileSync(file, JSON.stringify(payload) + "\\n") },
});
"""


@pytest.fixture(scope="module")
def gw() -> GraphileWorker:
    return graphile_worker()


async def test_node_with_the_forbidden_flag_leaves_limited_jobs_to_zodworker(
    gw: GraphileWorker, db_url: str, tmp_path: Path
) -> None:
    out = tmp_path / "node.jsonl"
    one = Limit("one", concurrency=1)
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        store = Store()
        await store.add_jobs(conn, [JobSpec(identifier="record", payload={"n": n}) for n in (1, 2)])
        limited = [JobSpec(identifier="record", payload={"n": n}) for n in (3, 4)]
        await store.add_jobs(conn, limited, limits=[[one], [one]])
        gw.node_script(NODE_RUN_ONCE, node_conninfo(db_url), str(out), json.dumps([LIMITED_FLAG]))
        ran = sorted(json.loads(line)["n"] for line in out.read_text().splitlines())
        assert ran == [1, 2]  # Node ran the plain jobs only

        seen: list[int] = []

        async def record(payload: Any, helpers: JobHelpers) -> None:
            seen.append(payload["n"])

        await run_once({"record": record}, connection=db_url, concurrency=4, migrate=False)
        cur = await conn.execute("select count(*) from graphile_worker.jobs")
        left = await cur.fetchone()
    assert sorted(seen) == [3, 4] and left == (0,)
