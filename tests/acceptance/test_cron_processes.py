"""Cron across real processes: exactly once on a shared simulated clock; crontab reload."""

from __future__ import annotations

import signal
import textwrap
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from tests.support.procs import Procs, poll_until

# A scheduler process on a warped clock: virtual time runs FACTOR times faster than real
# time from a shared real instant, so separate processes agree on "now".
DRIVER = textwrap.dedent(
    """
    import asyncio, sys, time
    from datetime import datetime, timedelta
    from psycopg_pool import AsyncConnectionPool
    from zodworker.cron import CronScheduler, cron_job, parse_crontab

    url, virtual_t0 = sys.argv[1], sys.argv[3]
    real_t0, factor = float(sys.argv[2]), float(sys.argv[4])
    origin = datetime.fromisoformat(virtual_t0)

    class WarpClock:
        def now(self):
            return origin + timedelta(seconds=(time.time() - real_t0) * factor)

        async def sleep_until(self, when):
            await asyncio.sleep(max((when - self.now()).total_seconds() / factor, 0))

    items = [cron_job(i) for i in parse_crontab("* * * * * tick\\n*/5 * * * * five\\n")]

    async def main():
        async with AsyncConnectionPool(url, min_size=1, max_size=2) as pool:
            print("scheduling", flush=True)
            await CronScheduler(items, pool, schema="graphile_worker", clock=WarpClock()).run()

    asyncio.run(main())
    """
)

VIRTUAL_START = datetime(2030, 1, 1, 0, 0, 30, tzinfo=UTC)
FACTOR = 120.0  # one simulated minute every half second


def cron_rows(db_url: str) -> list[tuple[str, str]]:
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "select v.task_identifier, j.payload->'_cron'->>'ts'"
            " from graphile_worker.jobs as v join graphile_worker._private_jobs as j using (id)"
        ).fetchall()
    return [(task, ts) for task, ts in rows]


@pytest.mark.slow
def test_three_scheduler_processes_add_each_occurrence_once(
    db_url: str, tmp_path: Path, procs: Procs
) -> None:
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    real_t0 = time.time() + 1.0
    schedulers = [
        procs.python(str(driver), db_url, str(real_t0), VIRTUAL_START.isoformat(), str(FACTOR))
        for _ in range(3)
    ]
    for proc in schedulers:
        proc.wait_for("scheduling")
    minutes = 65

    def enough() -> bool:
        return sum(1 for task, _ in cron_rows(db_url) if task == "tick") >= minutes

    poll_until(enough, within=minutes / 2 + 30, what=f"{minutes} simulated minutes", interval=0.2)
    for proc in schedulers:
        proc.send(signal.SIGKILL)
    rows = cron_rows(db_url)
    counts = Counter(rows)
    assert max(counts.values()) == 1, [row for row, n in counts.items() if n > 1][:5]
    ticks = sorted(ts for task, ts in rows if task == "tick")
    # the processes start a few simulated minutes in (imports) and do not backfill (no fill)
    first = datetime.fromisoformat(ticks[0])
    assert first - VIRTUAL_START < timedelta(minutes=15)
    expected = [
        (first + timedelta(minutes=n)).isoformat().replace("+00:00", "Z") for n in range(len(ticks))
    ]
    assert ticks == expected  # contiguous from the first minute: none missed, none twice
    fives = sorted(ts for task, ts in rows if task == "five")
    assert fives and all(int(ts[14:16]) % 5 == 0 for ts in fives)


def test_watch_reloads_an_edited_crontab_and_survives_a_broken_edit(
    db_url: str, tmp_path: Path, procs: Procs
) -> None:
    (tmp_path / "app.py").write_text(
        "async def noop(payload, helpers):\n    pass\nTASKS = {'noop': noop}\n"
    )
    crontab = tmp_path / "crontab"
    crontab.write_text("0 3 * * * noop\n")
    worker = procs.zodworker("-c", db_url, "run", "--app", "app:TASKS", "--watch")
    worker.wait_for("running tasks noop")
    mark = worker.mark()
    crontab.write_text("0 3 * * * noop\n*/10 * * * * noop ?id=often\n")
    worker.wait_for("reloaded 2 cron items", after=mark)
    mark = worker.mark()
    crontab.write_text("0 3 * * * noop\n61 * * * * noop ?id=broken\n")
    worker.wait_for("crontab not reloaded, keeping the previous items", after=mark)
    assert "column 1" in worker.output()
    worker.send(signal.SIGTERM)
    assert worker.wait_exit(60) == 0, worker.output()
