"""Job-processing benchmark: zodworker's worker pool vs graphile-worker 0.18, one run, same DB.

    python benchmarks/process.py [--database-url URL] [--jobs 20000] [--latency-samples 200]
                                 [--rounds 3] [--quick] [--no-node] [--profile FILE.prof]

Measures, each system in its own schema (zw_bench / gw_bench) of the same database:

* throughput, one worker process: ``--jobs`` no-op jobs are added beforehand (in batches of
  1000, not timed, then VACUUM ANALYZE + CHECKPOINT); the clock runs from "go" (the worker
  process is already started and imported, not yet connected) until the parent sees the jobs
  table empty. Concurrency 10 with a local queue of 500, and concurrency 10 without one.
* throughput, two worker processes: the same, with two processes of a system started
  together (local queue 500).
* enqueue-to-start latency with an idle worker (concurrency 10, local queue 500 and none):
  jobs added one at a time, ``--interval-ms`` apart, from a separate connection in the worker's
  own process; latency = handler start - the moment just before the add call, both read from
  the same monotonic clock. Poll interval 2 s, so starts are driven by LISTEN/NOTIFY.

Everything is repeated ``--rounds`` times (systems interleaved, which one goes first
alternating): throughput reports the median run, latency the percentiles of all rounds' samples.

Ratios say how zodworker compares, >1 meaning zodworker is better: zodworker / graphile-worker
for throughput, graphile-worker / zodworker for latency. Only ratios from one run are
comparable; absolute numbers depend on the machine (and on how many cores PostgreSQL, the
workers and this script share). See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, NoReturn

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from zodworker import (  # noqa: E402
    Events,
    JobSpec,
    Store,
    WorkerOptions,
    migrate,
    resolve_connection,
    run,
)

ZW_SCHEMA = "zw_bench"
GW_SCHEMA = "gw_bench"
SCHEMAS = {"zodworker": ZW_SCHEMA, "graphile-worker": GW_SCHEMA}
SYSTEMS = ("zodworker", "graphile-worker")
CONCURRENCY = 10
LOCAL_QUEUE = 500
ADD_BATCH = 1000
POLL_EMPTY_EVERY = 0.01  # seconds between the parent's "is the table empty yet?" checks
RUN_TIMEOUT = 600.0
NODE_SCRIPT = Path(__file__).with_name("graphile_process.mjs")

SETTINGS = f"""\
settings
  both      no-op task `noop` (async), payload {{"i": n}}, no queue name; concurrency {CONCURRENCY};
            poll interval 2 s; pool of 10 connections; complete/fail batch delay 0;
            only warnings/errors logged; signals not handled
  zodworker WorkerOptions(concurrency={CONCURRENCY}, local_queue_size={LOCAL_QUEUE} or -1,
            complete_job_batch_delay=0, fail_job_batch_delay=0, handle_signals=False)
  graphile  run({{ concurrency: {CONCURRENCY}, noHandleSignals: true, pollInterval: 2000,
            taskList: {{ noop }}, preset: {{ worker: {{ localQueue: {{ size: {LOCAL_QUEUE} }}
            (omitted for "no local queue"), completeJobBatchDelay: 0, failJobBatchDelay: 0 }} }} }})
            with NO_LOG_SUCCESS=1 and a logger printing warnings/errors only"""


@dataclass(frozen=True)
class Config:
    """One throughput measurement: a system, its process count, its local queue size."""

    system: str
    processes: int
    local_queue: int  # -1: none

    @property
    def label(self) -> str:
        lq = f"local queue {self.local_queue}" if self.local_queue > 0 else "no local queue"
        procs = "1 process" if self.processes == 1 else f"{self.processes} processes"
        return f"throughput, {procs}, {lq}"


@dataclass
class Throughput:
    seconds: float
    handled: list[int]
    worker_cpu_s: float
    startup_s: float  # go -> run() returned (connect, migrate check), slowest process
    machine_busy: float | None  # share of all cores busy during the run (0..1)


@dataclass
class Results:
    throughput: dict[Config, list[Throughput]] = field(default_factory=dict)
    latency: dict[tuple[str, int], list[float]] = field(default_factory=dict)


# --------------------------------------------------------------------------- database set-up


def _node() -> Any:
    from tests.support.graphile import graphile_worker

    return graphile_worker()


def _node_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("DATABASE_URL", None)
    env["NO_LOG_SUCCESS"] = "1"
    return env


def _node_cmd(node: Any, *args: str) -> list[str]:
    return [str(node.node), "--input-type=module", "--eval", NODE_SCRIPT.read_text(), *args]


def setup_schemas(url: str, with_node: bool) -> None:
    async def zodworker_side() -> None:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            for schema in SCHEMAS.values():
                await conn.execute(
                    sql.SQL("drop schema if exists {} cascade").format(sql.Identifier(schema))
                )
            await migrate(conn, schema=ZW_SCHEMA)

    asyncio.run(zodworker_side())
    if with_node:
        from tests.support.graphile import node_conninfo

        node = _node()
        subprocess.run(
            _node_cmd(node, "migrate", node_conninfo(url), GW_SCHEMA),
            cwd=node.cache_dir,
            env=_node_env(),
            check=True,
            capture_output=True,
            text=True,
            timeout=120,
        )


def fill(url: str, schema: str, jobs: int) -> None:
    """Empty the schema's jobs table, add ``jobs`` no-op jobs, then vacuum and checkpoint so
    every run starts from the same state."""

    async def add() -> None:
        store = Store(schema)
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await conn.execute(
                sql.SQL("delete from {}._private_jobs").format(sql.Identifier(schema))
            )
            for start in range(0, jobs, ADD_BATCH):
                specs = [
                    JobSpec(identifier="noop", payload={"i": i})
                    for i in range(start, min(jobs, start + ADD_BATCH))
                ]
                await store.add_jobs(conn, specs)

    asyncio.run(add())
    vacuum(url, schema)


def vacuum(url: str, schema: str) -> None:
    """VACUUM ANALYZE the schema's tables, then CHECKPOINT (when allowed)."""
    with psycopg.connect(url, autocommit=True) as conn:
        tables = sql.SQL(", ").join(
            sql.Identifier(schema, table)
            for table in ("_private_jobs", "_private_job_queues", "_private_tasks")
        )
        conn.execute(sql.SQL("vacuum (analyze) {}").format(tables))
        with contextlib.suppress(psycopg.Error):  # needs superuser or pg_checkpoint
            conn.execute("checkpoint")


def _cpu_busy() -> tuple[int, int] | None:
    """(busy, total) jiffies of all cores, from /proc/stat (Linux only)."""
    try:
        with open("/proc/stat") as fh:
            values = [int(v) for v in fh.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    return sum(values) - idle, sum(values)


# --------------------------------------------------------------------------- throughput


def _spawn(config: Config, url: str, profile: str | None, stderr: IO[str]) -> subprocess.Popen[str]:
    if config.system == "zodworker":
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "_zw-worker",
            url,
            ZW_SCHEMA,
            str(CONCURRENCY),
            str(config.local_queue),
        ]
        if profile:
            cmd.append(profile)
        cwd, env = None, None
    else:
        from tests.support.graphile import node_conninfo

        node = _node()
        cmd = _node_cmd(
            node, "worker", node_conninfo(url), GW_SCHEMA, str(CONCURRENCY), str(config.local_queue)
        )
        cwd, env = node.cache_dir, _node_env()
    return subprocess.Popen(
        cmd,
        cwd=cwd,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        bufsize=1,
    )


def _fail(procs: list[subprocess.Popen[str]], stderr: IO[str], what: str) -> NoReturn:
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stderr.seek(0)
    raise RuntimeError(f"{what}\n--- worker stderr ---\n{stderr.read()}")


def run_throughput(url: str, config: Config, jobs: int, profile: str | None = None) -> Throughput:
    schema = SCHEMAS[config.system]
    fill(url, schema, jobs)
    empty_query = sql.SQL("select exists (select 1 from {}._private_jobs)").format(
        sql.Identifier(schema)
    )
    with (
        tempfile.TemporaryFile("w+") as stderr,
        psycopg.connect(url, autocommit=True) as conn,
    ):
        procs = [_spawn(config, url, profile, stderr) for _ in range(config.processes)]
        for proc in procs:
            assert proc.stdout is not None
            if proc.stdout.readline().strip() != "ready":
                _fail(procs, stderr, f"{config.system} worker did not start")
        cpu0 = _cpu_busy()
        t0 = time.perf_counter()
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        while True:
            row = conn.execute(empty_query).fetchone()
            if row is not None and not row[0]:
                break
            if time.perf_counter() - t0 > RUN_TIMEOUT:
                _fail(procs, stderr, f"{config.system}: jobs left after {RUN_TIMEOUT:.0f}s")
            if any(proc.poll() is not None for proc in procs):
                _fail(procs, stderr, f"{config.system} worker exited early")
            time.sleep(POLL_EMPTY_EVERY)
        elapsed = time.perf_counter() - t0
        cpu1 = _cpu_busy()
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("stop\n")
            proc.stdin.close()
        reports = []
        for proc in procs:
            assert proc.stdout is not None
            out = proc.stdout.read()
            if proc.wait(timeout=60) != 0 or not out.strip():
                _fail(procs, stderr, f"{config.system} worker failed to stop cleanly")
            reports.append(json.loads(out.strip().splitlines()[-1]))
    handled = [int(r["handled"]) for r in reports]
    if sum(handled) != jobs:
        print(f"  warning: {config.system} ran {sum(handled)} jobs for {jobs} added", flush=True)
    busy = None
    if cpu0 and cpu1 and cpu1[1] > cpu0[1]:
        busy = (cpu1[0] - cpu0[0]) / (cpu1[1] - cpu0[1])
    return Throughput(
        elapsed,
        handled,
        sum(float(r["cpu_s"]) for r in reports),
        max(float(r["startup_s"]) for r in reports),
        busy,
    )


def zw_worker_main(argv: list[str]) -> None:
    """Child process: ``_zw-worker URL SCHEMA CONCURRENCY LOCAL_QUEUE [PROFILE]`` (the
    counterpart of graphile_process.mjs's ``worker`` mode)."""
    url, schema, concurrency, local_queue = argv[:4]
    profile_path = argv[4] if len(argv) > 4 else None
    handled = 0

    async def noop(payload: Any, helpers: Any) -> None:
        nonlocal handled
        handled += 1

    async def main() -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        options = WorkerOptions(
            connection=url,
            schema=schema,
            concurrency=int(concurrency),
            local_queue_size=int(local_queue),
            complete_job_batch_delay=0,
            fail_job_batch_delay=0,
            handle_signals=False,
        )
        # Node has loaded all of graphile-worker before it says "ready"; anyio imports its
        # asyncio backend on first use, so load it now to keep import time off the clock.
        importlib.import_module("anyio._backends._asyncio")
        print("ready", flush=True)
        await reader.readline()  # "go"
        profiler = None
        if profile_path:
            import cProfile

            profiler = cProfile.Profile(time.process_time)  # CPU time, not waits
            profiler.enable()
        cpu0, t0 = time.process_time(), time.perf_counter()
        pool = await run({"noop": noop}, options)
        startup = time.perf_counter() - t0
        stop = asyncio.ensure_future(reader.readline())  # "stop" or EOF
        died = asyncio.ensure_future(pool.wait())
        await asyncio.wait({stop, died}, return_when=asyncio.FIRST_COMPLETED)
        await pool.stop()
        cpu = time.process_time() - cpu0
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(profile_path)
        print(json.dumps({"handled": handled, "cpu_s": cpu, "startup_s": startup}), flush=True)

    asyncio.run(main())


# --------------------------------------------------------------------------- latency


async def zw_latency(
    url: str, local_queue: int, count: int, interval: float, warmup: int
) -> list[float]:
    """Idle zodworker pool in this process; jobs added from a second connection of it."""
    total = count + warmup
    added: list[float] = [0.0] * total
    started: list[float] = [0.0] * total
    seen = 0
    all_started = asyncio.Event()
    listening = asyncio.Event()
    events = Events()
    events.on("pool:listen:success", lambda _event: listening.set())

    async def noop(payload: Any, helpers: Any) -> None:
        nonlocal seen
        started[payload["i"]] = time.perf_counter()
        seen += 1
        if seen == total:
            all_started.set()

    pool = await run(
        {"noop": noop},
        WorkerOptions(
            connection=url,
            schema=ZW_SCHEMA,
            concurrency=CONCURRENCY,
            local_queue_size=local_queue,
            complete_job_batch_delay=0,
            fail_job_batch_delay=0,
            handle_signals=False,
            events=events,
        ),
    )
    store = Store(ZW_SCHEMA)
    try:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await asyncio.wait_for(listening.wait(), 30)
            await asyncio.sleep(0.2)  # let the first fetch finish
            t0 = time.perf_counter()
            for i in range(total):
                delay = t0 + i * interval - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                added[i] = time.perf_counter()
                await store.add_job(conn, "noop", {"i": i})
            await asyncio.wait_for(all_started.wait(), 60)
    finally:
        await pool.stop()
    return [(started[i] - added[i]) * 1000 for i in range(warmup, total)]


def gw_latency(url: str, local_queue: int, count: int, interval: float, warmup: int) -> list[float]:
    from tests.support.graphile import node_conninfo

    node = _node()
    proc = subprocess.run(
        _node_cmd(
            node,
            "latency",
            node_conninfo(url),
            GW_SCHEMA,
            str(CONCURRENCY),
            str(local_queue),
            str(count),
            str(interval * 1000),
            str(warmup),
        ),
        cwd=node.cache_dir,
        env=_node_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"graphile-worker latency run failed:\n{proc.stderr}")
    latencies: list[float] = json.loads(proc.stdout.strip().splitlines()[-1])["latencies_ms"]
    return latencies


def run_latency(
    url: str, system: str, local_queue: int, count: int, interval: float, warmup: int
) -> list[float]:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("delete from {}._private_jobs").format(sql.Identifier(SCHEMAS[system]))
        )
    vacuum(url, SCHEMAS[system])
    if system == "zodworker":
        return asyncio.run(zw_latency(url, local_queue, count, interval, warmup))
    return gw_latency(url, local_queue, count, interval, warmup)


def percentiles(values: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return {"p50": cuts[49], "p95": cuts[94], "p99": cuts[98]}


# --------------------------------------------------------------------------- report


def print_profile(path: str, limit: int = 25) -> None:
    import pstats

    for key in ("tottime", "cumulative"):
        print(f"\n--- zodworker profile ({path}), top {limit} by {key} ---", flush=True)
        stats = pstats.Stats(path)
        stats.strip_dirs().sort_stats(key).print_stats(limit)


def _ratio(num: float | None, den: float | None) -> str:
    return f"{num / den:>6.2f}x" if num and den else f"{'-':>7}"


def report(results: Results, args: argparse.Namespace) -> None:
    print(
        f"\n{'measure':<52} {'zodworker':>11} {'graphile-worker':>16} {'ratio':>7}\n"
        f"{'-' * 52} {'-' * 11} {'-' * 16} {'-' * 7}"
    )
    labels = sorted({c.label for c in results.throughput}, key=lambda s: ("2 proc" in s, s))
    for label in labels:
        rates = {
            config.system: args.jobs / statistics.median(r.seconds for r in runs)
            for config, runs in results.throughput.items()
            if config.label == label
        }
        ours, theirs = rates.get("zodworker"), rates.get("graphile-worker")
        print(
            f"{label + ' (jobs/s)':<52} {f'{ours:,.0f}' if ours else '-':>11} "
            f"{f'{theirs:,.0f}' if theirs else '-':>16} {_ratio(ours, theirs)}"
        )
    for local_queue in sorted({lq for _, lq in results.latency}, reverse=True):
        lq = f"local queue {local_queue}" if local_queue > 0 else "no local queue"
        stats = {
            system: percentiles(values)
            for (system, q), values in results.latency.items()
            if q == local_queue
        }
        for p in ("p50", "p95", "p99"):
            ours = stats.get("zodworker", {}).get(p)
            theirs = stats.get("graphile-worker", {}).get(p)
            print(
                f"{f'enqueue-to-start latency {p}, {lq} (ms)':<52} "
                f"{f'{ours:.2f}' if ours else '-':>11} {f'{theirs:.2f}' if theirs else '-':>16} "
                f"{_ratio(theirs, ours)}"
            )
    print(
        "\nratio > 1: zodworker better (throughput zodworker/graphile-worker, "
        "latency graphile-worker/zodworker)"
    )
    cores = os.cpu_count() or 1
    print(
        f"\ndetails: throughput is the median of {args.rounds} round(s) (each round's jobs/s "
        "in brackets); for that median run: start-up (go -> run() returned), CPU seconds of "
        f"the worker process(es) and of the rest of the machine's {cores} cores (mostly "
        "PostgreSQL), and jobs run per process"
    )
    for config, runs in results.throughput.items():
        mid = sorted(runs, key=lambda r: r.seconds)[len(runs) // 2]
        other = "?"
        if mid.machine_busy is not None:
            other = f"{mid.machine_busy * cores * mid.seconds - mid.worker_cpu_s:.2f}s"
        each = ", ".join(f"{args.jobs / r.seconds:,.0f}" for r in runs)
        print(
            f"  {config.system:<16} {config.label:<40} [{each}]\n"
            f"  {'':<16} {mid.seconds:.2f}s, start-up {mid.startup_s * 1000:.0f} ms, worker CPU "
            f"{mid.worker_cpu_s:.2f}s ({mid.worker_cpu_s / args.jobs * 1e6:.0f} us/job), "
            f"other CPU {other}, jobs per process {mid.handled}"
        )
    for label in labels:
        runs = {c.system: r for c, r in results.throughput.items() if c.label == label}
        if len(runs) == 2:
            paired = ", ".join(
                f"{theirs.seconds / ours.seconds:.2f}"
                for ours, theirs in zip(runs["zodworker"], runs["graphile-worker"], strict=True)
            )
            print(f"  ratio per round, {label:<40} [{paired}]")
    for (system, local_queue), values in results.latency.items():
        print(
            f"  {system:<16} latency, local queue {local_queue:<4} n={len(values)} "
            f"min {min(values):.2f} ms, mean {statistics.fmean(values):.2f} ms, "
            f"max {max(values):.2f} ms"
        )
    print(
        f"\n{SETTINGS}\n  workload  throughput: {args.jobs} jobs added beforehand in batches of "
        f"{ADD_BATCH}; clock from 'go' to an empty jobs table (checked every "
        f"{POLL_EMPTY_EVERY * 1000:.0f} ms)\n            latency: per round {args.latency_samples} "
        f"jobs (after {args.warmup} warm-up jobs) added {args.interval_ms:g} ms apart, in the\n"
        "            worker's own process, from a separate connection; percentiles over all "
        "rounds' samples"
    )


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_zw-worker":
        zw_worker_main(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database-url")
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--latency-samples", type=int, default=200, help="per round")
    parser.add_argument("--interval-ms", type=float, default=20.0)
    parser.add_argument("--warmup", type=int, default=10, help="latency jobs not counted")
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="repetitions: throughput is their median, latency pools their samples",
    )
    parser.add_argument("--quick", action="store_true", help="--jobs 5000 --latency-samples 100")
    parser.add_argument("--no-node", action="store_true", help="measure zodworker only")
    parser.add_argument(
        "--profile",
        metavar="FILE",
        help="afterwards, run the 1-process zodworker throughput once more under cProfile, "
        "save the stats to FILE and print the top functions",
    )
    args = parser.parse_args()
    if args.quick:
        args.jobs, args.latency_samples = 5_000, 100

    url = resolve_connection(args.database_url)
    systems = [s for s in SYSTEMS if s == "zodworker" or not args.no_node]
    setup_schemas(url, with_node=not args.no_node)
    results = Results()
    started = time.perf_counter()
    for round_no in range(args.rounds):
        order = systems if round_no % 2 == 0 else systems[::-1]  # who goes first alternates
        configs = [
            Config(system, processes, local_queue)
            for processes, local_queue in ((1, LOCAL_QUEUE), (1, -1), (2, LOCAL_QUEUE))
            for system in order
        ]
        for config in configs:
            print(f"[round {round_no + 1}] {config.system}: {config.label} ...", flush=True)
            result = run_throughput(url, config, args.jobs)
            results.throughput.setdefault(config, []).append(result)
            print(f"  {result.seconds:.2f}s ({args.jobs / result.seconds:,.0f} jobs/s)", flush=True)
        for local_queue in (LOCAL_QUEUE, -1):
            for system in order:
                print(
                    f"[round {round_no + 1}] {system}: latency, local queue {local_queue} ...",
                    flush=True,
                )
                values = run_latency(
                    url,
                    system,
                    local_queue,
                    args.latency_samples,
                    args.interval_ms / 1000,
                    args.warmup,
                )
                results.latency.setdefault((system, local_queue), []).extend(values)
                print(f"  p50 {statistics.median(values):.2f} ms", flush=True)
    print(f"\nmeasured in {time.perf_counter() - started:.0f}s")
    report(results, args)
    if args.profile:
        print("\nprofiling zodworker (1 process, local queue 500) ...", flush=True)
        result = run_throughput(
            url, Config("zodworker", 1, LOCAL_QUEUE), args.jobs, profile=args.profile
        )
        print(f"  {result.seconds:.2f}s under cProfile")
        print_profile(args.profile)


if __name__ == "__main__":
    main()
