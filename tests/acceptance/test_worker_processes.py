"""Worker processes under real-world abuse: SIGKILL, a PostgreSQL restart, signals, and many
pools sharing named queues.

Every worker is a real OS process (the ``zodworker`` command line, or a small driver script
where the test needs heartbeat settings the command line does not expose). Handlers record
each run in a ``runs`` table of the test database (one clock for everyone:
``clock_timestamp()`` of the server), and the tests read that table and the jobs table.
"""

from __future__ import annotations

import asyncio
import signal
import time
from datetime import datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from tests.support.procapp import (
    add_jobs,
    finished_count,
    job_count,
    prepare,
    runs_per_n,
    scalar,
    sql,
    start_cli_worker,
    stop_gracefully,
)
from tests.support.procs import Proc, Procs, poll_until
from zodworker import JobSpec, migrate

HEARTBEAT = 0.5
RECOVERY = 3.0


# ------------------------------------------------------------------------------ 1. SIGKILL


def test_sigkilled_pool_jobs_rerun_elsewhere_within_recovery_bound(
    db_url: str, tmp_path: Path, procs: Procs
) -> None:
    prepare(db_url, tmp_path)
    fast = [JobSpec(identifier="rec", payload={"n": n}, priority=0) for n in range(10)]
    slow = [JobSpec(identifier="gated", payload={"n": 100 + n}, priority=1) for n in range(3)]
    add_jobs(db_url, fast + slow)

    def driver() -> Proc:
        proc = procs.python("driver.py", db_url, "2", str(HEARTBEAT), str(RECOVERY))
        proc.wait_for("driver ready", within=60)
        return proc

    a = driver()
    a_pool = a.wait_for("driver ready").split()[-1]
    poll_until(
        lambda: (
            finished_count(db_url, "n < 100") == 10
            and int(scalar(db_url, "select count(*) from runs where n >= 100")) >= 2
        ),
        within=30,
        what="A to finish the fast jobs and start two gated ones",
    )
    a.popen.send_signal(signal.SIGKILL)
    assert a.wait_exit(10) == -signal.SIGKILL
    killed_at: datetime = scalar(db_url, "select clock_timestamp()")
    # A's last heartbeat as the database saw it: nobody may take its jobs before
    # last_seen + recovery_timeout.
    last_seen: datetime = scalar(
        db_url,
        "select last_seen from graphile_worker._zodworker_pools where pool_id = %s",
        (a_pool,),
    )
    killed = {
        n for (n,) in sql(db_url, "select n from runs where n >= 100 and finished_at is null")
    }
    assert len(killed) == 2, sql(db_url, "select * from runs")
    locked = sql(
        db_url,
        "select locked_by, attempts from graphile_worker._private_jobs where locked_by is not null",
    )
    assert locked == [(a_pool, 1), (a_pool, 1)]
    completed_before_kill = {n for (n,) in sql(db_url, "select n from runs where n < 100")}
    assert completed_before_kill == set(range(10))
    sql(db_url, "update gate set opened = true")

    b = driver()
    b.wait_for("released 2 jobs of dead pools", within=30)
    poll_until(
        lambda: job_count(db_url) == 0 and finished_count(db_url, "n >= 100") == 3,
        within=30,
        what="B to run the killed jobs and the never-started one",
    )

    per_n = runs_per_n(db_url)
    assert per_n == {
        **dict.fromkeys(range(10), 1),
        100: 1,
        101: 1,
        102: 1,
        **dict.fromkeys(killed, 2),
    }
    reruns = sql(
        db_url,
        "select n, attempts, started_at, pid from runs where n = any(%s) and attempts = 2",
        (list(killed),),
    )
    assert sorted(n for n, *_ in reruns) == sorted(killed)
    assert {pid for *_, pid in reruns} == {b.pid}
    # every job finished; the killed ones show their second attempt
    assert int(scalar(db_url, "select count(*) from runs where finished_at is null")) == 2
    assert sql(db_url, "select n, attempts from runs where finished_at is null order by n") == [
        (n, 1) for n in sorted(killed)
    ]
    latest_rerun = max(started for _, _, started, _ in reruns)
    recovery = (latest_rerun - killed_at).total_seconds()
    print(f"\nrecovery after SIGKILL: {recovery:.2f}s (recovery_timeout {RECOVERY}s)")
    assert recovery < RECOVERY + 4 * HEARTBEAT + 5  # < 10 s with these settings
    earliest_rerun = min(started for _, _, started, _ in reruns)
    assert earliest_rerun >= last_seen + timedelta(seconds=RECOVERY)
    assert (
        sql(
            db_url,
            "select pool_id from graphile_worker._zodworker_pools where pool_id = %s",
            (a_pool,),
        )
        == []
    )

    assert stop_gracefully(b) == 0
    assert "driver stopped" in b.output()


# ------------------------------------------------------------------------ 2. PG restart


def test_workers_survive_a_postgres_restart(tmp_path: Path, procs: Procs) -> None:
    """A dedicated embedded server is stopped and started again under two live workers:
    ``busy`` (-j 4, polls every 200 ms) works through a backlog whose in-flight jobs fail
    and retry; ``idle`` (ping jobs only, polls every 60 s) can only notice a new job in
    time through its re-established LISTEN connection."""
    from zodworker.embedded import start_embedded, stop_embedded

    pgdir = tmp_path / "pg"
    try:
        uri = start_embedded(pgdir)

        async def migrate_it() -> None:
            async with await psycopg.AsyncConnection.connect(uri, autocommit=True) as conn:
                await migrate(conn)

        asyncio.run(migrate_it())
        prepare(uri, tmp_path)
        total = 300
        add_jobs(
            uri, [JobSpec(identifier="rec", payload={"n": n, "sleep": 0.1}) for n in range(total)]
        )
        busy = start_cli_worker(procs, uri, "-j", "4", "--poll-interval", "200")
        idle = start_cli_worker(
            procs, uri, "-j", "1", "--poll-interval", "60000", app="procapp:PING"
        )
        poll_until(lambda: finished_count(uri) >= 40, within=60, what="40 jobs to run")
        left = job_count(uri)
        assert left > 0

        started_before = scalar(uri, "select pg_postmaster_start_time()")
        t0 = time.monotonic()
        stop_embedded(pgdir)
        down = time.monotonic() - t0
        assert start_embedded(pgdir) == uri
        restart = time.monotonic() - t0
        assert scalar(uri, "select pg_postmaster_start_time()") > started_before
        assert busy.alive() and idle.alive(), busy.output() + idle.output()

        t1 = time.monotonic()
        poll_until(lambda: job_count(uri) == 0, within=120, what="the backlog to finish")
        backlog = time.monotonic() - t1
        # both pools LISTEN again on fresh connections (pg_stat_activity shows the last query)
        poll_until(
            lambda: (
                int(
                    scalar(
                        uri,
                        "select count(*) from pg_stat_activity"
                        " where datname = current_database()"
                        " and query like 'LISTEN \"jobs:insert\"%'",
                    )
                )
                == 2
            ),
            within=60,
            what="both pools to LISTEN again",
        )
        t2 = time.monotonic()
        add_jobs(uri, [JobSpec(identifier="ping", payload={"n": -1})])
        poll_until(lambda: finished_count(uri, "n = -1") == 1, within=10, what="the ping job")
        ping = time.monotonic() - t2
        print(
            f"\nPostgreSQL stop {down:.1f}s, stop+start {restart:.1f}s; backlog done"
            f" {backlog:.1f}s later; ping ran after {ping:.2f}s (poll interval 60s);"
            f" {left} of {total} jobs were left at the restart"
        )
        assert ping < 5

        done = {n for (n,) in sql(uri, "select distinct n from runs where finished_at is not null")}
        assert done == {*range(total), -1}
        assert job_count(uri) == 0
        assert busy.alive() and idle.alive()
        assert stop_gracefully(busy) == 0, busy.output()
        assert stop_gracefully(idle) == 0, idle.output()
        assert "worker stopped" in busy.output() and "worker stopped" in idle.output()
    finally:
        procs.close()
        stop_embedded(pgdir)


# ---------------------------------------------------------------------- command synopsis


def test_worker_flags_after_the_run_command(db_url: str, tmp_path: Path, procs: Procs) -> None:
    prepare(db_url, tmp_path)
    add_jobs(db_url, [JobSpec(identifier="rec", payload={"n": 7})])
    worker = procs.zodworker("run", "-c", db_url, "--app", "procapp:TASKS", "-j", "2", "--once")
    assert worker.wait_exit(60) == 0, worker.output()
    assert finished_count(db_url) == 1 and job_count(db_url) == 0


# ------------------------------------------------------------------ 3. graceful shutdown


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_graceful_signal_finishes_the_running_job_and_returns_the_rest(
    db_url: str, tmp_path: Path, procs: Procs, sig: signal.Signals
) -> None:
    prepare(db_url, tmp_path)
    ids = add_jobs(
        db_url, [JobSpec(identifier="rec", payload={"n": n, "sleep": 1.0}) for n in range(5)]
    )
    worker = start_cli_worker(procs, db_url, "-j", "1", "--local-queue-size", "10")
    poll_until(
        lambda: int(scalar(db_url, "select count(*) from runs")) == 1,
        within=30,
        what="the first job to start",
    )
    locked = "select count(*) from graphile_worker._private_jobs where locked_by is not null"
    assert scalar(db_url, locked) == 5  # one running, four fetched into the local queue
    signalled_at: datetime = scalar(db_url, "select clock_timestamp()")
    worker.send(sig)
    code = worker.wait_exit(30)
    output = worker.output()
    assert code == 0, output
    assert "worker stopped" in output
    assert f"{sig.name} received: graceful" in output

    ((ran, started, finished),) = sql(db_url, "select job_id, started_at, finished_at from runs")
    assert finished is not None and finished > signalled_at
    assert (finished - started).total_seconds() >= 1.0
    rest = sql(
        db_url,
        "select id, locked_by, locked_at, attempts, last_error"
        " from graphile_worker._private_jobs order by id",
    )
    assert [row[0] for row in rest] == sorted(set(ids) - {ran})
    assert all(row[1:] == (None, None, 0, None) for row in rest), rest
    assert sql(db_url, "select * from graphile_worker._zodworker_pools") == []


# ------------------------------------------------------------------ 4. forceful shutdown


def _forceful(db_url: str, tmp_path: Path, procs: Procs, task: str) -> None:
    prepare(db_url, tmp_path)
    (job_id,) = add_jobs(db_url, [JobSpec(identifier=task, payload={"n": 1})])
    worker = start_cli_worker(procs, db_url, "-j", "1")
    poll_until(
        lambda: int(scalar(db_url, "select count(*) from runs")) == 1,
        within=30,
        what="the job to start",
    )
    worker.send(signal.SIGINT)
    worker.wait_for("SIGINT received: graceful")
    worker.send(signal.SIGINT)
    sent = time.monotonic()
    worker.wait_for("SIGINT received: forceful")
    worker.wait_for("worker stopped", within=15)
    ((locked_by, locked_at, attempts, last_error, run_at_later),) = sql(
        db_url,
        "select locked_by, locked_at, attempts, last_error, run_at > now()"
        " from graphile_worker._private_jobs where id = %s",
        (job_id,),
    )
    assert (locked_by, locked_at, attempts, run_at_later) == (None, None, 1, True)
    assert last_error is not None and "forceful" in last_error
    assert sql(db_url, "select finished_at from runs") == [(None,)]
    assert sql(db_url, "select * from graphile_worker._zodworker_pools") == []
    code = worker.wait_exit(10)
    took = time.monotonic() - sent
    print(f"\nforceful shutdown ({task}): exit code {code} after {took:.2f}s")
    assert code == 0, worker.output()


def test_second_sigint_fails_the_running_job_and_exits_promptly(
    db_url: str, tmp_path: Path, procs: Procs
) -> None:
    _forceful(db_url, tmp_path, procs, "forever")


def test_second_sigint_exits_promptly_even_with_a_blocking_sync_handler(
    db_url: str, tmp_path: Path, procs: Procs
) -> None:
    _forceful(db_url, tmp_path, procs, "forever_sync")


# ------------------------------------------------------------- 5. many pools, named queues


def test_four_processes_share_named_queues_without_overlap_or_duplicates(
    db_url: str, tmp_path: Path, procs: Procs
) -> None:
    prepare(db_url, tmp_path)
    total, queues = 5000, 20
    add_jobs(
        db_url,
        [
            JobSpec(identifier="rec", payload={"n": n, "spin": 2000}, queue_name=f"q{n % queues}")
            for n in range(total)
        ],
    )
    t0 = time.monotonic()
    # a short poll interval: idle pools compete often for the queues other pools free
    flags = ["--app", "procapp:TASKS", "-j", "10", "--local-queue-size", "50"]
    flags += ["--poll-interval", "100"]
    workers = [procs.zodworker("-c", db_url, *flags, "run") for _ in range(4)]
    for worker in workers:
        worker.wait_for("running tasks", within=60)
    poll_until(lambda: job_count(db_url) == 0, within=120, what="all jobs to run", interval=0.2)
    elapsed = time.monotonic() - t0
    for worker in workers:
        worker.send(signal.SIGTERM)
    for worker in workers:
        assert worker.wait_exit(60) == 0, worker.output()
        assert "worker stopped" in worker.output()

    per_n = runs_per_n(db_url)
    assert len(per_n) == total and set(per_n.values()) == {1}
    assert finished_count(db_url) == total
    assert int(scalar(db_url, "select count(*) from runs where queue <> 'q' || (n % 20)")) == 0
    overlaps = sql(
        db_url,
        """
        select queue, n, started_at, prev_finished from (
          select queue, n, started_at,
                 lag(finished_at) over (partition by queue order by started_at) as prev_finished
          from runs
        ) as r
        where started_at < prev_finished
        limit 5
        """,
    )
    assert overlaps == []
    # the queues did run in parallel (so "no overlap" is not trivially true), one job each
    peak = scalar(
        db_url,
        """
        select max(running) from (
          select sum(delta) over (order by at, delta rows unbounded preceding) as running
          from (
            select started_at as at, 1 as delta from runs
            union all
            select finished_at, -1 from runs
          ) as edges
        ) as sweep
        """,
    )
    by_pid = dict(sql(db_url, "select pid, count(*) from runs group by pid"))
    print(
        f"\n{total} jobs in {queues} queues by 4 processes in {elapsed:.1f}s;"
        f" peak {peak} running at once; runs per pid {sorted(by_pid.values())}"
    )
    assert 1 < peak <= queues
    assert len(by_pid) >= 2
