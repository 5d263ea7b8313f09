"""Enqueue benchmark: zodworker's store vs graphile-worker 0.18, same database, one run.

    python benchmarks/enqueue.py [--database-url URL] [--single 2000] [--batch-total 100000]
                                 [--batch-size 1000] [--pairs 6] [--no-node]

Three sides get the same payloads (the reference catalog's workload), each enqueueing into
its own schema of the same database: zodworker's ``Store``, the typed client
(``ZodWorker.enqueue`` / ``enqueue_many``: catalog lookup, pydantic validation, defaults)
and graphile-worker's ``makeWorkerUtils``. ``single`` jobs one per transaction, then
``batch-total`` jobs in batches of ``batch-size`` (one transaction per batch). Times exclude
process start-up and connection set-up. Each pair runs all three, who goes first rotating;
reported: the median of the per-pair ratios (ours / graphile-worker's jobs per second, > 1 is
better for us) with its spread, and the load average before each pair (benchmarks/pairs.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from pairs import DEFAULT_PAIRS, load_average, order, spread  # noqa: E402
from runs import GW_SCHEMA, ZW_SCHEMA, setup_schemas  # noqa: E402

from catalog import TASK_OPTIONS, sample_payload  # noqa: E402
from zodworker import (  # noqa: E402
    JobSpec,
    Store,
    TaskCatalog,
    ZodWorker,
    resolve_connection,
    task,
)

TASKS = ["startRun", "deliverEvent", "scheduleEmail", "indexEndpoint", "runFinished"]


def make_payloads(count: int, seed: int = 7) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    out = []
    for i in range(count):
        task = TASKS[i % len(TASKS)]
        queue = TASK_OPTIONS[task].queue_name
        out.append(
            {
                "task": task,
                "payload": sample_payload(task, rng).model_dump(mode="json"),
                "queue": queue if isinstance(queue, str) else None,
            }
        )
    return out


async def reset(url: str, schema: str) -> None:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute(sql.SQL("truncate {}._private_jobs").format(sql.Identifier(schema)))


async def bench_zodworker(
    url: str, payloads: list[dict[str, Any]], single: int, batch_size: int, batch_total: int
) -> dict[str, float]:
    store = Store(ZW_SCHEMA)
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        t0 = time.perf_counter()
        for i in range(single):
            p = payloads[i % len(payloads)]
            await store.add_job(conn, p["task"], p["payload"], queue_name=p["queue"])
        single_s = time.perf_counter() - t0

        t0 = time.perf_counter()
        for done in range(0, batch_total, batch_size):
            specs = [
                JobSpec(identifier=p["task"], payload=p["payload"], queue_name=p["queue"])
                for p in (payloads[(done + i) % len(payloads)] for i in range(batch_size))
            ]
            await store.add_jobs(conn, specs)
        batch_s = time.perf_counter() - t0
    return {"single_s": single_s, "batch_s": batch_s}


async def bench_client(
    url: str, payloads: list[dict[str, Any]], single: int, batch_size: int, batch_total: int
) -> dict[str, float]:
    """The same workload through ZodWorker: catalog lookup, pydantic validation of every
    payload, defaults overlaid, then the store."""
    catalog = TaskCatalog(
        **{
            name: task(options.model, queue_name=options.queue_name)
            for name, options in TASK_OPTIONS.items()
            if name in TASKS
        }
    )
    client = ZodWorker(catalog=catalog, schema=ZW_SCHEMA, producer_only=True, migrate=False)
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        t0 = time.perf_counter()
        for i in range(single):
            p = payloads[i % len(payloads)]
            await client.enqueue(p["task"], p["payload"], tx=conn)
        single_s = time.perf_counter() - t0

        t0 = time.perf_counter()
        for done in range(0, batch_total, batch_size):
            items: list[tuple[Any, Any]] = [
                (p["task"], p["payload"])
                for p in (payloads[(done + i) % len(payloads)] for i in range(batch_size))
            ]
            await client.enqueue_many(items, tx=conn)
        batch_s = time.perf_counter() - t0
    return {"single_s": single_s, "batch_s": batch_s}


def bench_graphile(
    url: str, payloads_file: Path, single: int, batch_size: int, batch_total: int
) -> dict[str, float]:
    from tests.support.graphile import graphile_worker

    script = (Path(__file__).parent / "graphile_enqueue.mjs").read_text()
    proc = graphile_worker().node_script(
        script,
        url,
        GW_SCHEMA,
        str(payloads_file),
        str(single),
        str(batch_size),
        str(batch_total),
        timeout=1800,
    )
    result: dict[str, float] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


SIDES = ("zodworker store", "zodworker client", "graphile-worker")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database-url")
    parser.add_argument("--single", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--batch-total", type=int, default=100_000)
    parser.add_argument("--pairs", type=int, default=DEFAULT_PAIRS)
    parser.add_argument("--no-node", action="store_true", help="measure zodworker only")
    args = parser.parse_args()

    url = resolve_connection(args.database_url)
    payloads = make_payloads(1000)

    setup_schemas(url, with_node=False)  # graphile_enqueue.mjs migrates its own schema
    sides = [s for s in SIDES if s != "graphile-worker" or not args.no_node]
    results: list[dict[str, dict[str, float]]] = []
    loads: list[float] = []
    work = (args.single, args.batch_size, args.batch_total)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        json.dump(payloads, fh)
        payloads_file = Path(fh.name)
    try:
        for pair in range(args.pairs):
            loads.append(load_average())
            row: dict[str, dict[str, float]] = {}
            for side in order(sides, pair):
                schema = GW_SCHEMA if side == "graphile-worker" else ZW_SCHEMA
                if pair or side != "graphile-worker":  # graphile-worker migrates on first use
                    asyncio.run(reset(url, schema))
                if side == "zodworker store":
                    row[side] = asyncio.run(bench_zodworker(url, payloads, *work))
                elif side == "zodworker client":
                    row[side] = asyncio.run(bench_client(url, payloads, *work))
                else:
                    row[side] = bench_graphile(url, payloads_file, *work)
            results.append(row)
            print(f"pair {pair + 1}: {json.dumps(row)}", flush=True)
    finally:
        payloads_file.unlink()
    report(results, loads, args)


def report(
    results: list[dict[str, dict[str, float]]], loads: list[float], args: argparse.Namespace
) -> None:
    rows = [
        ("enqueue, 1 job per transaction", "single_s", args.single),
        (f"enqueue, batches of {args.batch_size}", "batch_s", args.batch_total),
    ]

    def rates(side: str, key: str, count: int) -> list[float]:
        return [count / r[side][key] for r in results if side in r]

    print(f"\n{'measure (jobs/s, medians of pairs)':<44} {'ours':>9} {'graphile':>9}  ratio")
    for label, key, count in rows:
        for side in ("zodworker store", "zodworker client"):
            ours = rates(side, key, count)
            theirs = rates("graphile-worker", key, count)
            ratio = (
                spread([o / t for o, t in zip(ours, theirs, strict=False)]).ratio()
                if theirs
                else "-"
            )
            name = f"{label} ({side[10:]})"
            print(
                f"{name:<44} {statistics.median(ours):>9,.0f} "
                f"{statistics.median(theirs) if theirs else 0:>9,.0f}  {ratio}"
            )
    print("\ntyped client over the store it wraps (per pair, client/store jobs/s):")
    for label, key, count in rows:
        cost = [
            s / c
            for s, c in zip(
                rates("zodworker client", key, count),
                rates("zodworker store", key, count),
                strict=True,
            )
        ]
        print(f"  {label:<40} {spread(cost).ratio()}")
    print(f"\nload average (1 min) before each pair: {', '.join(f'{x:.2f}' for x in loads)}")


if __name__ == "__main__":
    main()
