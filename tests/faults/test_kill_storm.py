"""A SIGKILL storm: two worker processes over 5,000 jobs, one of them killed (and started
again) every few hundred milliseconds, at least 30 times. Nothing is lost, nothing stays
locked, no live pool completes a job twice, and every job a kill interrupted runs again
within the lease + 2 s. The storm runs on the shared server: no server is restarted."""

from __future__ import annotations

import random
import signal
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.support.procapp import add_jobs, job_count, prepare, scalar, sql
from tests.support.procs import Proc, Procs, poll_until
from zodworker import JobSpec

HEARTBEAT = 0.2
LEASE = 1.0


@pytest.mark.parametrize(
    ("jobs", "kills"),
    [(5000, 30), pytest.param(50_000, 300, marks=pytest.mark.soak)],
    ids=["storm", "soak"],
)
def test_sigkill_storms_lose_nothing(
    db_url: str, tmp_path: Path, procs: Procs, jobs: int, kills: int
) -> None:
    prepare(db_url, tmp_path)
    # enqueued one after the other (as they would be): a released job, due earlier than the
    # backlog, runs before it (equal run_at would leave the order to the index)
    first = datetime.now(UTC) - timedelta(seconds=jobs / 1000)
    add_jobs(
        db_url,
        [
            JobSpec(
                identifier="rec",
                payload={"n": n, "sleep": 0.02},
                run_at=first + timedelta(milliseconds=n),
            )
            for n in range(jobs)
        ],
    )

    def start() -> Proc:
        proc = procs.python("driver.py", db_url, "10", str(HEARTBEAT), str(LEASE))
        proc.wait_for("driver ready", within=60)
        return proc

    workers = [start(), start()]
    killed: list[tuple[int, datetime]] = []
    rng = random.Random(7)
    while len(killed) < kills or job_count(db_url) > 0:
        if len(killed) >= kills:
            time.sleep(0.2)
            if job_count(db_url) == 0:
                break
            continue
        time.sleep(rng.uniform(0.2, 0.5))
        victim = workers.pop(rng.randrange(len(workers)))
        victim.popen.send_signal(signal.SIGKILL)
        assert victim.wait_exit(10) == -signal.SIGKILL
        killed.append((victim.pid, datetime.now(UTC)))
        workers.append(start())
    poll_until(lambda: job_count(db_url) == 0, within=60, what="every job to finish")

    killed_pids = {pid for pid, _ in killed}
    killed_at = dict(killed)
    finished = sql(db_url, "select n, pid, finished_at from runs where finished_at is not null")
    by_n: dict[int, list[tuple[int, datetime]]] = {}
    for n, pid, at in finished:
        by_n.setdefault(n, []).append((pid, at))
    lost = set(range(jobs)) - set(by_n)
    # a job finished twice only when the pool that finished it first was killed before it
    # could write the completion; a live pool never completes a job another completed
    doubles = [
        n
        for n, done in by_n.items()
        if len(done) > 1
        and any(pid not in killed_pids for pid, _ in sorted(done, key=lambda d: d[1])[:-1])
    ]
    interrupted = sql(
        db_url,
        "select r.n, r.pid, (select min(s.started_at) from runs s"
        "  where s.n = r.n and s.started_at > r.started_at)"
        " from runs r where r.finished_at is null",
    )
    delays = [
        (again - killed_at[pid]).total_seconds()
        for _, pid, again in interrupted
        if again is not None and pid in killed_at
    ]
    locked = int(
        scalar(
            db_url,
            "select (select count(*) from graphile_worker._private_jobs"
            "        where locked_by is not null)"
            " + (select count(*) from graphile_worker._private_job_queues"
            "    where locked_by is not null)",
        )
    )
    print(
        f"\n{len(killed)} SIGKILLs over {jobs} jobs in 2 pools: lost {len(lost)}, left locked"
        f" {locked}, double completions by live pools {len(doubles)}, interrupted runs"
        f" {len(interrupted)}, rerun delay max {max(delays, default=0):.2f}s"
        f" (lease {LEASE}s)"
    )
    assert len(killed) >= kills
    assert lost == set() and locked == 0 and doubles == []
    assert all(again is not None for _, _, again in interrupted), "an interrupted job never reran"
    assert max(delays, default=0) <= LEASE + 2
    for proc in workers:
        proc.send(signal.SIGTERM)
        assert proc.wait_exit(60) == 0, proc.output()
