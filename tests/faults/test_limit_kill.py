"""A worker process SIGKILLed while it holds limit slots: its slots are freed with its lease,
its jobs run again elsewhere, and no key ever runs more jobs at once than its limit.

Handlers record each run with the server's clock. A killed run has no end; it stopped at
the moment of the kill, so that is its end for the overlap count. Recovery must not free
the dead pool's slots before its lease is reaped, and must free them then: every job
finishes exactly once.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import psycopg

from tests.support.limitapp import most_at_once, prepare_limit_app
from tests.support.procapp import scalar, sql
from tests.support.procs import Proc, Procs, poll_until
from zodworker import JobSpec, Limit, SyncStore

JOBS = 36
PER_KEY = 2


def _worker(procs: Procs, url: str) -> Proc:
    env = {"ZODWORKER_HEARTBEAT_INTERVAL": "0.3", "ZODWORKER_RECOVERY_TIMEOUT": "2"}
    proc = procs.zodworker("-c", url, "--app", "limitapp:TASKS", "-j", "6", "run", env=env)
    proc.wait_for("running tasks", within=60)
    return proc


def test_a_killed_worker_frees_its_slots_with_its_lease_and_nothing_runs_twice(
    db_url: str, tmp_path: Path, procs: Procs
) -> None:
    prepare_limit_app(db_url, tmp_path)
    limit = Limit("per-key", concurrency=PER_KEY, key=lambda p: p["k"])
    specs = [
        JobSpec(identifier="limited", payload={"k": f"k{n % 3}", "sleep": 0.4}) for n in range(JOBS)
    ]
    with psycopg.connect(db_url, autocommit=True) as conn:
        SyncStore().add_jobs(conn, specs, limits=[[limit]] * JOBS)
    doomed = _worker(procs, db_url)
    poll_until(
        lambda: (
            int(scalar(db_url, "select count(*) from limited_runs where finished_at is null")) >= 3
        ),
        within=30,
        what="the first worker holding slots",
    )
    doomed.kill()
    killed_at = scalar(db_url, "select clock_timestamp()")
    held = int(scalar(db_url, "select count(*) from graphile_worker._zodworker_limit_slots"))
    assert held >= 3  # the dead pool's slots are still held: its lease has not expired
    survivor = _worker(procs, db_url)
    poll_until(
        lambda: (
            int(
                scalar(
                    db_url,
                    "select count(distinct job_id) from limited_runs where finished_at is not null",
                )
            )
            == JOBS
        ),
        within=90,
        what="every job finished",
    )
    # a handler records its finish before its outcome is written (with the slot's release):
    # wait for the writes, not just the handlers, before stopping the survivor
    poll_until(
        lambda: int(scalar(db_url, "select count(*) from graphile_worker._private_jobs")) == 0,
        within=30,
        what="every outcome written",
    )
    poll_until(  # freed by the survivor's outcome writes, not by its kill
        lambda: (
            int(scalar(db_url, "select count(*) from graphile_worker._zodworker_limit_slots")) == 0
        ),
        within=10,
        what="no slot held",
    )
    survivor.kill()
    finished = sql(
        db_url, "select job_id, count(*) from limited_runs where finished_at is not null group by 1"
    )
    assert all(count == 1 for _, count in finished) and len(finished) == JOBS
    interrupted = int(scalar(db_url, "select count(*) from limited_runs where finished_at is null"))
    assert interrupted >= 3  # those runs were cut by the kill and ran again
    spans: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for key, started, ended in sql(db_url, "select key, started_at, finished_at from limited_runs"):
        end = ended if ended is not None else killed_at  # a killed run stopped at the kill
        spans[key].append((started.timestamp(), end.timestamp()))
    most = max(most_at_once(key_spans) for key_spans in spans.values())
    assert most <= PER_KEY
