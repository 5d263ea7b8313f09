"""Enqueue benchmark: zodworker's store vs graphile-worker 0.18, same database, one run.

    python benchmarks/enqueue.py [--database-url URL] [--single 2000] [--batch-total 20000]
                                 [--batch-size 1000] [--rounds 3] [--no-node]

Both sides get the same payloads (the reference catalog's workload) and each enqueues into
its own schema of the same database: ``single`` jobs one per transaction, then
``batch-total`` jobs in batches of ``batch-size`` (one transaction per batch). Times exclude
process start-up and connection set-up. Each round runs both sides; the median is reported,
with the ratio zodworker / graphile-worker in jobs per second (higher is better for us).
Only ratios from one run are comparable: absolute numbers depend on the machine.
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

from catalog import TASK_OPTIONS, sample_payload  # noqa: E402
from zodworker import (  # noqa: E402
    JobSpec,
    Store,
    TaskCatalog,
    ZodWorker,
    migrate,
    resolve_connection,
    task,
)

ZW_SCHEMA = "zw_bench"
GW_SCHEMA = "gw_bench"
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database-url")
    parser.add_argument("--single", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--batch-total", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-node", action="store_true", help="measure zodworker only")
    args = parser.parse_args()

    url = resolve_connection(args.database_url)
    payloads = make_payloads(1000)

    async def setup() -> None:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            for schema in (ZW_SCHEMA, GW_SCHEMA):
                await conn.execute(
                    sql.SQL("drop schema if exists {} cascade").format(sql.Identifier(schema))
                )
            await migrate(conn, schema=ZW_SCHEMA)

    asyncio.run(setup())
    results: dict[str, list[dict[str, float]]] = {
        "zodworker": [],
        "zodworker client": [],
        "graphile-worker": [],
    }
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        json.dump(payloads, fh)
        payloads_file = Path(fh.name)
    try:
        for round_no in range(args.rounds):
            if round_no:
                asyncio.run(reset(url, ZW_SCHEMA))
            results["zodworker"].append(
                asyncio.run(
                    bench_zodworker(url, payloads, args.single, args.batch_size, args.batch_total)
                )
            )
            asyncio.run(reset(url, ZW_SCHEMA))
            results["zodworker client"].append(
                asyncio.run(
                    bench_client(url, payloads, args.single, args.batch_size, args.batch_total)
                )
            )
            if not args.no_node:
                if round_no:
                    asyncio.run(reset(url, GW_SCHEMA))
                results["graphile-worker"].append(
                    bench_graphile(
                        url, payloads_file, args.single, args.batch_size, args.batch_total
                    )
                )
    finally:
        payloads_file.unlink()

    def rate(side: str, key: str, count: int) -> float:
        return count / statistics.median(r[key] for r in results[side])

    rows = [
        ("enqueue, 1 job per transaction", "single_s", args.single),
        (f"enqueue, batches of {args.batch_size}", "batch_s", args.batch_total),
    ]
    print(
        f"\n{f'measure (jobs/s, median of {args.rounds})':<40} {'zodworker':>12} "
        f"{'graphile-worker':>16} {'ratio':>7}"
    )
    for label, key, count in rows:
        ours = rate("zodworker", key, count)
        if results["graphile-worker"]:
            theirs = rate("graphile-worker", key, count)
            print(f"{label:<40} {ours:>12,.0f} {theirs:>16,.0f} {ours / theirs:>6.2f}x")
        else:
            print(f"{label:<40} {ours:>12,.0f} {'-':>16} {'-':>7}")
    print(f"\n{'typed client vs raw store (jobs/s)':<40} {'client':>12} {'store':>16} {'cost':>7}")
    for label, key, count in rows:
        typed = rate("zodworker client", key, count)
        raw = rate("zodworker", key, count)
        print(f"{label:<40} {typed:>12,.0f} {raw:>16,.0f} {raw / typed - 1:>+6.0%}")


if __name__ == "__main__":
    main()
