"""PostgreSQL restarts under an idle worker whose connection pool is full: every pooled
connection is dead afterwards. The worker drops them on the first failure and retries on a
fresh connection (no error counted), so jobs added after the restart run within 2 s; and a
SIGTERM while the server is down still stops the worker within the abort timeout + 1 s.
A private embedded cluster is restarted, never the shared server."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import psycopg

from tests.support.procapp import (
    add_jobs,
    finished_count,
    prepare,
    scalar,
    start_cli_worker,
)
from tests.support.procs import Procs, poll_until
from zodworker import JobSpec, migrate

ABORT_TIMEOUT = 5.0  # the command line's graceful_shutdown_abort_timeout


def pool_connections(url: str) -> int:
    return int(
        scalar(
            url,
            "select count(*) from pg_stat_activity"
            " where datname = current_database() and application_name like 'zodworker:shared:%'",
        )
    )


def test_an_idle_worker_with_a_full_pool_runs_new_jobs_right_after_a_restart(
    tmp_path: Path, procs: Procs
) -> None:
    from zodworker.embedded import start_embedded, stop_embedded

    pgdir = tmp_path / "pg"
    try:
        uri = start_embedded(pgdir)

        async def migrate_it() -> None:
            async with await psycopg.AsyncConnection.connect(uri, autocommit=True) as conn:
                await migrate(conn)

        asyncio.run(migrate_it())
        prepare(uri, tmp_path)
        worker = start_cli_worker(
            procs, uri, "-j", "4", "-m", "3", "--poll-interval", "60000", app="procapp:PING"
        )
        add_jobs(
            uri, [JobSpec(identifier="ping", payload={"n": n, "sleep": 0.3}) for n in range(8)]
        )
        poll_until(lambda: finished_count(uri) == 8, within=30, what="the warm-up jobs")
        poll_until(lambda: pool_connections(uri) == 3, within=10, what="a full pool of 3")

        stop_embedded(pgdir)
        assert start_embedded(pgdir) == uri
        t0 = time.monotonic()
        add_jobs(uri, [JobSpec(identifier="ping", payload={"n": 100})])
        poll_until(lambda: finished_count(uri, "n = 100") == 1, within=10, what="the new job")
        resumed = time.monotonic() - t0
        assert "fetching jobs failed" not in worker.output(), worker.output()

        stop_embedded(pgdir)  # an outage, and then the operator stops the worker
        t1 = time.monotonic()
        worker.send(signal.SIGTERM)
        code = worker.wait_exit(15)
        stopped = time.monotonic() - t1
        print(
            f"\nafter the restart a new job ran {resumed:.2f}s after it was added; SIGTERM during"
            f" the outage exited in {stopped:.2f}s (abort timeout {ABORT_TIMEOUT:.0f}s)"
        )
        assert resumed < 2.0
        assert code == 0, worker.output()
        assert stopped < ABORT_TIMEOUT + 1, worker.output()
    finally:
        stop_embedded(pgdir)
