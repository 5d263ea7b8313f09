"""Real time: two zodworker processes and a Node graphile-worker share one per-minute cron
item; each minute's job is added exactly once."""

from __future__ import annotations

import signal
from pathlib import Path

import psycopg
import pytest

from tests.support.graphile import GraphileWorker, graphile_worker
from tests.support.procs import Procs, poll_until

pytestmark = [pytest.mark.node, pytest.mark.slow]

# graphile-worker with the same crontab; it is the only process that has the `tick` task,
# so it runs every tick job, recording the occurrence it was added for.
NODE_CRON = """
import { run } from "graphile-worker";
const [connectionString, seconds] = process.argv.slice(2);
const tick = async (payload, helpers) => {
  await helpers.withPgClient((client) =>
    client.query("insert into ticks (ts, runner) values ($1::timestamptz, 'node')",
      [payload._cron.ts]));
};
const runner = await run({
  connectionString, concurrency: 2, noHandleSignals: true, pollInterval: 200,
  crontab: "* * * * * tick", taskList: { tick },
});
console.log("node cron running");
await new Promise((resolve) => setTimeout(resolve, Number(seconds) * 1000));
await runner.stop();
console.log("node cron stopped");
"""


def ticks(db_url: str) -> list[object]:
    with psycopg.connect(db_url) as conn:
        return [row[0] for row in conn.execute("select ts from ticks order by ts").fetchall()]


def test_each_minute_is_added_once_by_mixed_schedulers(
    db_url: str, tmp_path: Path, procs: Procs
) -> None:
    gw: GraphileWorker = graphile_worker()
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("create table ticks (ts timestamptz not null, runner text not null)")
    (tmp_path / "crontab").write_text("* * * * * tick\n")
    (tmp_path / "app.py").write_text(
        "async def noop(payload, helpers):\n    pass\nTASKS = {'noop': noop}\n"
    )
    workers = [procs.zodworker("-c", db_url, "run", "--app", "app:TASKS") for _ in range(2)]
    for worker in workers:
        worker.wait_for("running tasks noop")
    import threading

    node_result: list[object] = []
    node = threading.Thread(
        target=lambda: node_result.append(gw.node_script(NODE_CRON, db_url, "200", timeout=260))
    )
    node.start()
    try:
        seen = poll_until(
            lambda: (lambda rows: rows if len(rows) >= 3 else None)(ticks(db_url)),
            within=240,
            what="three minutes of ticks",
            interval=1.0,
        )
    finally:
        for worker in workers:
            worker.send(signal.SIGTERM)
        node.join(timeout=300)
    assert seen is not None
    rows = ticks(db_url)
    assert len(rows) == len(set(rows)), rows  # no minute added twice
    assert all(ts.second == 0 and ts.microsecond == 0 for ts in rows), rows  # type: ignore[attr-defined]
    for worker in workers:
        assert worker.wait_exit(60) == 0, worker.output()
