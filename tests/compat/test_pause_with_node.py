"""A paused queue holds off Node graphile-worker too: `graphile-worker --once` runs every
job but those of the paused queue; after resuming, it runs them."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest

from tests.support.graphile import GraphileWorker, graphile_worker
from zodworker import JobSpec, Store
from zodworker.admin import Admin

pytestmark = [pytest.mark.anyio, pytest.mark.node]

SCHEMA = "graphile_worker"


@pytest.fixture(scope="module")
def gw() -> GraphileWorker:
    return graphile_worker()


async def test_node_workers_leave_a_paused_queue_alone_until_it_is_resumed(
    gw: GraphileWorker, db_url: str, tmp_path: Path
) -> None:
    out = tmp_path / "ran.jsonl"
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "record.mjs").write_text(
        "import { appendFileSync } from 'node:fs';\n"
        "export default async (payload) => {\n"
        "  appendFileSync(process.env.RECORD_FILE, JSON.stringify(payload) + '\\n');\n"
        "};\n"
    )
    env = {"RECORD_FILE": str(out)}
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        await Store().add_jobs(
            conn,
            [
                JobSpec(identifier="record", queue_name="held", payload={"n": 1}),
                JobSpec(identifier="record", queue_name="free", payload={"n": 2}),
                JobSpec(identifier="record", payload={"n": 3}),
            ],
        )
        assert await Admin().pause_queue(conn, "held")
        gw.run_once(db_url, SCHEMA, tasks, env=env)
        ran = sorted(json.loads(line)["n"] for line in out.read_text().splitlines())
        assert ran == [2, 3]
        assert await Admin().resume_queue(conn, "held")
        gw.run_once(db_url, SCHEMA, tasks, env=env)
    ran = sorted(json.loads(line)["n"] for line in out.read_text().splitlines())
    assert ran == [1, 2, 3]
