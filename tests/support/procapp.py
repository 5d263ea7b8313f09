"""Worker processes for tests that abuse them: a task app whose handlers record every run in
a ``runs`` table (one clock for everyone: the server's ``clock_timestamp()``), a driver script
for settings the command line does not expose, and helpers to start, feed and read them."""

from __future__ import annotations

import asyncio
import signal
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg

from tests.support.procs import Proc, Procs
from zodworker import JobSpec, Store

__all__ = [
    "APP",
    "DRIVER",
    "TABLES",
    "add_jobs",
    "finished_count",
    "job_count",
    "prepare",
    "runs_per_n",
    "scalar",
    "sql",
    "start_cli_worker",
    "stop_gracefully",
]

APP = textwrap.dedent(
    """
    import asyncio
    import os
    import time

    START = (
        "insert into runs (job_id, n, queue, pid, attempts) values (%s, %s, %s, %s, %s)"
        " returning id"
    )
    FINISH = "update runs set finished_at = clock_timestamp() where id = %s"


    async def _start(payload, helpers):
        job = helpers.job
        rows = await helpers.query(
            START, (job.id, payload["n"], job.queue_name, os.getpid(), job.attempts)
        )
        return rows[0][0]


    async def rec(payload, helpers):
        run = await _start(payload, helpers)
        sum(range(payload.get("spin", 0)))  # a tiny bit of CPU work
        if payload.get("sleep"):
            await asyncio.sleep(payload["sleep"])
        await helpers.query(FINISH, (run,))


    async def gated(payload, helpers):
        run = await _start(payload, helpers)
        while not (await helpers.query("select opened from gate"))[0][0]:
            await asyncio.sleep(0.05)
        await helpers.query(FINISH, (run,))


    async def forever(payload, helpers):
        await _start(payload, helpers)
        while True:
            await asyncio.sleep(1)


    def forever_sync(payload, helpers):  # a blocking handler that ignores its abort signal
        helpers.call(_start, payload, helpers)
        while True:
            time.sleep(0.05)


    TASKS = {"rec": rec, "gated": gated, "forever": forever, "forever_sync": forever_sync}
    PING = {"ping": rec}
    """
)

DRIVER = textwrap.dedent(
    """
    import asyncio
    import logging
    import sys

    import zodworker
    from procapp import TASKS


    async def main():
        pool = await zodworker.run(
            TASKS,
            connection=sys.argv[1],
            concurrency=int(sys.argv[2]),
            heartbeat_interval=float(sys.argv[3]),
            recovery_timeout=float(sys.argv[4]),
            poll_interval=0.5,
            handle_signals=True,
        )
        print(f"driver ready {pool.pool_id}", flush=True)
        await pool.wait()
        print("driver stopped", flush=True)


    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    asyncio.run(main())
    """
)

TABLES = """
create table runs (
  id bigserial primary key,
  job_id bigint not null,
  n int not null,
  queue text,
  pid int not null,
  attempts int not null,
  started_at timestamptz not null default clock_timestamp(),
  finished_at timestamptz
);
create table gate (opened boolean not null);
insert into gate values (false);
"""


def sql(url: str, query: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
    """Run one statement on a fresh autocommit connection; return its rows (if any)."""
    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        cur = conn.execute(query, params)
        return cur.fetchall() if cur.description else []


def scalar(url: str, query: str, params: Sequence[Any] | None = None) -> Any:
    return sql(url, query, params)[0][0]


def add_jobs(url: str, specs: list[JobSpec]) -> list[int]:
    async def go() -> list[int]:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            return [job.id for job in await Store().add_jobs(conn, specs)]

    return asyncio.run(go())


def job_count(url: str) -> int:
    return int(scalar(url, "select count(*) from graphile_worker._private_jobs"))


def finished_count(url: str, where: str = "true") -> int:
    return int(scalar(url, f"select count(*) from runs where finished_at is not null and {where}"))


def runs_per_n(url: str) -> dict[int, int]:
    return dict(sql(url, "select n, count(*) from runs group by n"))


def prepare(url: str, tmp_path: Path) -> None:
    sql(url, TABLES)
    (tmp_path / "procapp.py").write_text(APP)
    (tmp_path / "driver.py").write_text(DRIVER)


def stop_gracefully(proc: Proc) -> int:
    proc.send(signal.SIGTERM)
    return proc.wait_exit(60)


def start_cli_worker(procs: Procs, url: str, *args: str, app: str = "procapp:TASKS") -> Proc:
    proc = procs.zodworker("-c", url, "--app", app, *args, "run")  # flags precede the command
    proc.wait_for("running tasks", within=60)
    return proc
