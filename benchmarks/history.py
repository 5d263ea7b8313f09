"""What keeping job history costs: pruning a million rows, the worker's rate while it runs,
and the price of recording itself.

    python benchmarks/history.py --database-url postgresql://.../scratch [--rows 1000000]
        [--pairs 6] [--jobs 100000]

Three measures, each in interleaved pairs (``pairs.py``; first one alternating):

* **prune**: ``rows`` history rows older than the retention are pruned the way the pools'
  maintenance does it (``WorkerStore.prune_history``: statements of 10,000 rows, oldest
  first, each its own transaction); reported: seconds and rows/s.
* **worker rate while pruning**: one zodworker process drains ``jobs`` no-op jobs (as in
  ``process.py``) while the prune runs beside it, against the same drain without it; the
  figure is the median of the per-pair ratios (with pruning / without).
* **recording**: the same drain with ``history=True`` (every job leaves a history row)
  against without; the ratio is what recording costs a job that has nothing else to do.

Also, once: the alternative layout, the same rows in a table partitioned by day, whose
expired rows go with ``DROP TABLE`` of their partition, timed for comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import threading
import time
from pathlib import Path

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import runs  # noqa: E402
from benchmarks.pairs import DEFAULT_PAIRS, load_average, order, spread  # noqa: E402
from zodworker.db.connect import Database  # noqa: E402
from zodworker.db.worker_store import WorkerStore  # noqa: E402

RETENTION = 7 * 86_400.0


def fill_history(url: str, rows: int) -> None:
    """``rows`` history rows finished 8-9 days ago (past the retention), ~300 bytes each."""
    with psycopg.connect(url, autocommit=True) as conn:
        table = sql.Identifier(runs.ZW_SCHEMA, "_zodworker_job_history")
        conn.execute(sql.SQL("truncate {}").format(table))
        conn.execute(
            sql.SQL(
                "insert into {} (job_id, task_identifier, queue_name, outcome, payload, output,"
                " attempts, max_attempts, created_at, started_at, finished_at, duration)"
                " select n, 'resize', null, 'success', json_build_object('url', 's3://' || n),"
                " jsonb_build_object('width', n, 'note', repeat('x', 120)), 1, 25,"
                " now() - interval '9 days', now() - interval '9 days',"
                " now() - interval '8 days' - make_interval(secs => n / 100.0), 0.001"
                " from generate_series(1, %s) as n"
            ).format(table),
            (rows,),
        )
        conn.execute(sql.SQL("vacuum analyze {}").format(table))


def prune(url: str) -> tuple[int, float]:
    """Prune as the maintenance loop does; (rows, seconds)."""

    async def go() -> tuple[int, float]:
        database = Database(url, schema=runs.ZW_SCHEMA)
        await database.open()
        try:
            store = WorkerStore(database, "bench-pruner")
            start = time.perf_counter()
            pruned = await store.prune_history(RETENTION, None)
            return pruned, time.perf_counter() - start
        finally:
            await database.close()

    return asyncio.run(go())


def drain(url: str, jobs: int, *, history: bool = False) -> float:
    """Jobs/s of one zodworker process draining ``jobs`` no-op jobs (with ``history``:
    each leaving a history row, into an emptied table)."""
    if history:
        with psycopg.connect(url, autocommit=True) as conn:
            table = sql.Identifier(runs.ZW_SCHEMA, "_zodworker_job_history")
            conn.execute(sql.SQL("truncate {}").format(table))
        os.environ["ZW_BENCH_HISTORY"] = "1"
    try:
        return runs.run_throughput(url, runs.Config("zodworker", 1, runs.LOCAL_QUEUE), jobs).rate
    finally:
        os.environ.pop("ZW_BENCH_HISTORY", None)


def drain_while_pruning(url: str, jobs: int) -> tuple[float, int, float]:
    """Drain with a prune of the filled history running beside it: (jobs/s, rows, s)."""
    outcome: list[tuple[int, float]] = []
    thread = threading.Thread(target=lambda: outcome.append(prune(url)))
    thread.start()
    rate = drain(url, jobs)
    thread.join()
    return rate, *outcome[0]


def partitioned_drop(url: str, rows: int) -> float:
    """Seconds to drop one day's partition holding ``rows`` rows (the alternative layout)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("drop schema if exists zw_bench_parts cascade")
        conn.execute("create schema zw_bench_parts")
        conn.execute(
            "create table zw_bench_parts.history (job_id bigint, finished_at timestamptz not"
            " null, output jsonb) partition by range (finished_at)"
        )
        conn.execute(
            "create table zw_bench_parts.day partition of zw_bench_parts.history"
            " for values from (now() - interval '10 days') to (now() - interval '7 days')"
        )
        conn.execute(
            "insert into zw_bench_parts.history select n, now() - interval '8 days',"
            " jsonb_build_object('width', n, 'note', repeat('x', 120))"
            " from generate_series(1, %s) as n",
            (rows,),
        )
        start = time.perf_counter()
        conn.execute("drop table zw_bench_parts.day")
        seconds = time.perf_counter() - start
        conn.execute("drop schema zw_bench_parts cascade")
        return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--pairs", type=int, default=DEFAULT_PAIRS)
    args = parser.parse_args()
    url = args.database_url
    runs.setup_schemas(url, with_node=False)
    prune_runs: list[tuple[int, float]] = []
    busy, recording, loads = [], [], []
    for pair in range(args.pairs):
        loads.append(load_average())
        rates: dict[str, float] = {}
        for kind in order(["pruning", "plain"], pair):
            if kind == "pruning":
                fill_history(url, args.rows)
                rate, pruned, seconds = drain_while_pruning(url, args.jobs)
                prune_runs.append((pruned, seconds))
            else:
                rate = drain(url, args.jobs)
            rates[kind] = rate
        for kind in order(["history", "none"], pair):
            rates[kind] = drain(url, args.jobs, history=kind == "history")
        busy.append(rates["pruning"] / rates["plain"])
        recording.append(rates["history"] / rates["none"])
        print(
            f"pair {pair + 1}: load {loads[-1]:.2f}; pruned {pruned:,} rows in {seconds:.1f}s;"
            f" rate with/without pruning {rates['pruning']:.0f}/{rates['plain']:.0f};"
            f" with/without history {rates['history']:.0f}/{rates['none']:.0f} jobs/s",
            flush=True,
        )
    seconds_each = [s for _, s in prune_runs]
    print(f"\nprune {args.rows:,} expired rows (batches of 10,000):")
    print(
        f"  median {statistics.median(seconds_each):.1f}s"
        f" ({args.rows / statistics.median(seconds_each):,.0f} rows/s),"
        f" range {min(seconds_each):.1f}-{max(seconds_each):.1f}s"
    )
    print(f"worker rate while pruning / without: {spread(busy).ratio()}")
    print(f"worker rate with history=True / without: {spread(recording).ratio()}")
    print(f"load average: {min(loads):.2f}-{max(loads):.2f}")
    print(
        f"partitioned by day instead: DROP of a {args.rows:,}-row partition took"
        f" {partitioned_drop(url, args.rows) * 1000:.0f} ms"
    )


if __name__ == "__main__":
    main()
