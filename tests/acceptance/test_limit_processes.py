"""Flow control across worker processes (issue 14's acceptance): a concurrency limit per key
held by three processes at once while they keep its slots busy, a rate limit that no window
exceeds, and a small tenant served beside a 50,000-job backlog.

Handlers record each run in a table of the test database with the server's clock
(``clock_timestamp()`` when the handler starts and ends; ``locked_at``, the moment the fetch
took the job and recorded its start in the limit's window), so every process shares one
clock. Figures are printed (``pytest -s``); the bounds asserted are the issue's.
"""

from __future__ import annotations

import itertools
import math
import time
from collections import defaultdict
from pathlib import Path

import psycopg
import pytest

from tests.support.limitapp import most_at_once, prepare_limit_app
from tests.support.procapp import scalar, sql, start_cli_worker, stop_gracefully
from tests.support.procs import Proc, Procs, poll_until
from zodworker import JobSpec, Limit, Rate, SyncStore


def _add(url: str, specs: list[JobSpec], limit: Limit) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for start in range(0, len(specs), 5_000):
            chunk = specs[start : start + 5_000]
            SyncStore().add_jobs(conn, chunk, limits=[[limit]] * len(chunk))


def _finished(url: str, where: str = "true") -> int:
    query = f"select count(*) from limited_runs where finished_at is not null and {where}"
    return int(scalar(url, query))


def _worker(procs: Procs, url: str, concurrency: int) -> Proc:
    return start_cli_worker(
        procs, url, "-j", str(concurrency), "--poll-interval", "1", app="limitapp:TASKS"
    )


@pytest.mark.parametrize(
    ("per_key", "jobs"),
    [
        (3, 2_000),  # the case: 60 limit slots, 30 worker slots bind
        (1, 600),  # the limit binds: 20 slots for 30 worker slots
    ],
)
def test_three_processes_hold_the_limit_per_key_over_20_keys_and_keep_the_slots_busy(
    db_url: str, tmp_path: Path, procs: Procs, per_key: int, jobs: int
) -> None:
    prepare_limit_app(db_url, tmp_path)
    workers = [_worker(procs, db_url, 10) for _ in range(3)]
    sleep, keys = 0.5, 20
    limit = Limit("per-key", concurrency=per_key, key=lambda p: p["k"])
    specs = [
        JobSpec(identifier="limited", payload={"k": f"k{n % keys}", "sleep": sleep})
        for n in range(jobs)
    ]
    _add(db_url, specs, limit)
    poll_until(lambda: _finished(db_url) == jobs, within=180, what=f"{jobs} jobs done")
    for worker in workers:
        assert stop_gracefully(worker) == 0
    runs = sql(db_url, "select key, started_at, finished_at, job_id from limited_runs")
    assert len({job_id for *_, job_id in runs}) == jobs  # each job once
    by_key: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for key, started, finished, _ in runs:
        by_key[key].append((started.timestamp(), finished.timestamp()))
    most = max(most_at_once(spans) for spans in by_key.values())
    assert most <= per_key
    gaps = []  # per key, from one job's end to the next one's start
    for spans in by_key.values():
        gaps += [b[0] - a[1] for a, b in itertools.pairwise(sorted(spans))]
    gaps.sort()
    first = min(started for _, started, _, _ in runs)
    last = max(finished for _, _, finished, _ in runs)
    took = (last - first).total_seconds()
    # the fastest possible: every slot busy, the binding one of the limit's (keys x per_key,
    # each key's jobs in rounds) and the workers' (3 x 10)
    ideal = max(math.ceil(jobs / keys / per_key) * sleep, jobs * sleep / 30)
    print(f"\n{jobs} jobs, {per_key} per key x {keys} keys, 3 processes x 10: {took:.2f}s,")
    print(f"  ideal {ideal:.2f}s: {ideal / took:.1%} of what the slots allow; most per key {most}")
    if per_key == 1:  # one job of a key at a time: the gaps between them are refills
        median, p90 = gaps[len(gaps) // 2] * 1000, gaps[int(len(gaps) * 0.9)] * 1000
        print(f"  a freed slot is refilled in {median:.1f} ms (median), {p90:.1f} ms (p90)")
    assert ideal / took >= 0.9


def test_a_rate_limit_of_20_a_second_over_1000_jobs_holds_in_every_window(
    db_url: str, tmp_path: Path, procs: Procs
) -> None:
    prepare_limit_app(db_url, tmp_path)
    workers = [_worker(procs, db_url, 10) for _ in range(2)]
    api = Limit("api", rate=Rate(20, per=1.0))
    _add(db_url, [JobSpec(identifier="limited", payload={"k": "api"}) for _ in range(1_000)], api)
    began = time.monotonic()
    poll_until(lambda: _finished(db_url) == 1_000, within=90, what="1,000 jobs done")
    for worker in workers:
        assert stop_gracefully(worker) == 0
    starts = sorted(row[0].timestamp() for row in sql(db_url, "select locked_at from limited_runs"))
    busiest = 0
    ahead = 0
    for i, start in enumerate(starts):  # the window [start, start + 1s) of every start
        ahead = max(ahead, i)
        while ahead < len(starts) and starts[ahead] < start + 1.0:
            ahead += 1
        busiest = max(busiest, ahead - i)
    took = starts[-1] - starts[0]
    print(f"\n1,000 jobs at 20/s on 2 processes: first to last start {took:.2f}s (wall clock")
    print(f"  {time.monotonic() - began:.2f}s); the busiest 1-second window: {busiest} starts")
    assert busiest <= 20
    assert took <= 55.0


def test_a_small_tenant_starts_within_2s_behind_a_50000_job_backlog(
    db_url: str, tmp_path: Path, procs: Procs
) -> None:
    prepare_limit_app(db_url, tmp_path)
    tenant = Limit("tenant", key=lambda p: p["k"])  # no cap: tenants served in turn
    big = [JobSpec(identifier="limited", payload={"k": "A", "sleep": 0.02}) for _ in range(50_000)]
    _add(db_url, big, tenant)
    worker = _worker(procs, db_url, 10)
    poll_until(lambda: _finished(db_url) >= 200, within=60, what="tenant A under way")
    small = [JobSpec(identifier="limited", payload={"k": "B", "sleep": 0.02}) for _ in range(50)]
    _add(db_url, small, tenant)
    poll_until(lambda: _finished(db_url, "key = 'B'") == 50, within=60, what="B's 50 jobs done")
    assert stop_gracefully(worker) == 0
    [(waited, a_done)] = sql(
        db_url,
        "select extract(epoch from max(locked_at) - min(created_at))::float8,"
        " (select count(*) from limited_runs where key = 'A')"
        " from limited_runs where key = 'B'",
    )
    offsets = sql(
        db_url,
        "select extract(epoch from locked_at - created_at)::float8 from limited_runs"
        " where key = 'B' order by 1",
    )
    print(f"\nB's starts after being added: first {offsets[0][0]:.3f}s, tenth {offsets[9][0]:.3f}s")
    print(f"tenant B's 50 jobs all started {waited:.3f}s after they were added,")
    print(f"  behind tenant A's 50,000 (of which {a_done} had run)")
    assert waited <= 2.0
    assert a_done < 50_000  # B did not wait for A's backlog
