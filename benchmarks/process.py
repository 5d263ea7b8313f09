"""Job-processing benchmark: zodworker's worker pool vs graphile-worker 0.18, same database.

    python benchmarks/process.py [--database-url URL] [--pairs 6] [--jobs 20000]
                                 [--latency-samples 200] [--scale 1,2,4,8]
                                 [--backlog 1000000] [--backlog-queue 500]
                                 [--only throughput,latency]
                                 [--quick] [--no-node] [--json FILE] [--profile FILE]

Measures, each system in its own schema (zw_bench / gw_bench) of the same database:

* throughput: ``--jobs`` no-op jobs added beforehand (not timed, then VACUUM ANALYZE +
  CHECKPOINT); the clock runs from "go" (worker processes started and imported, not yet
  connected) until the parent sees the jobs table empty. One process with a local queue of
  500 and without one; two processes with a local queue of 500.
* latency: an idle worker (local queue 500, then none) in the adder's own process; jobs added
  one at a time, ``--interval-ms`` apart; latency = handler start - the moment before the add.
  Beside both systems, the *raw floor*: a bare LISTEN connection claiming each job with one
  UPDATE ... SKIP LOCKED.
* ``--scale 1,2,4,8``: throughput with that many worker processes (local queue 500), with
  the client connections seen at once and the database's CPU per job.
* ``--backlog N``: one process draining N jobs (local queue 500, or ``--backlog-queue``
  for both systems); jobs/s per tenth of the drain and the worker's memory every second.

Every measure is taken in ``--pairs`` interleaved pairs (who goes first alternates); the
result is the median of the per-pair ratios with its spread, and the load average before each
pair (benchmarks/pairs.py). Ratios > 1 mean zodworker is better: zodworker / graphile-worker
for throughput, graphile-worker / zodworker for latency. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import runs
from pairs import DEFAULT_PAIRS, load_average, order, spread
from runs import LOCAL_QUEUE, Config, RunFailed, Throughput

from zodworker import resolve_connection

SETTINGS = f"""\
settings
  both      no-op task `noop` (async), payload {{"i": n}}, no queue name; concurrency
            {runs.CONCURRENCY}; poll interval 2 s; pool of 10 connections; complete/fail batch
            delay 0; only warnings/errors logged; signals not handled
  zodworker WorkerOptions(concurrency={runs.CONCURRENCY}, local_queue_size={LOCAL_QUEUE} or -1,
            complete_job_batch_delay=0, fail_job_batch_delay=0, handle_signals=False);
            local_queue_fetch_ahead left at "auto": on for 1 process, off for several;
            local_queue_max_size left at its default (4 x local_queue_size), which the
            batch of a process keeping pace with its fetches grows to
  graphile  run({{ concurrency: {runs.CONCURRENCY}, noHandleSignals: true, pollInterval: 2000,
            taskList: {{ noop }}, preset: {{ worker: {{ localQueue: {{ size: {LOCAL_QUEUE} }}
            (omitted for "no local queue"), completeJobBatchDelay: 0, failJobBatchDelay: 0 }} }} }})
            with NO_LOG_SUCCESS=1 and a logger printing warnings/errors only
  raw       LISTEN "jobs:insert" + benchmarks/raw_floor.sql (claim, then delete)"""

THROUGHPUT = ((1, LOCAL_QUEUE), (1, -1), (2, LOCAL_QUEUE))
LATENCY_QUEUES = (LOCAL_QUEUE, -1)


@dataclass
class Results:
    """Everything measured, by measure label, then pair, then system."""

    pairs: int
    loads: list[float] = field(default_factory=list)
    throughput: dict[str, list[dict[str, Throughput]]] = field(default_factory=dict)
    latency: dict[str, list[dict[str, list[float]]]] = field(default_factory=dict)
    dropped: list[str] = field(default_factory=list)

    def slot(self, table: dict[str, list[dict[str, Any]]], label: str) -> list[dict[str, Any]]:
        return table.setdefault(label, [{} for _ in range(self.pairs)])


# --------------------------------------------------------------------------- measuring


def measure(args: argparse.Namespace, url: str, systems: list[str]) -> Results:
    results = Results(args.pairs)
    started = time.perf_counter()
    for pair in range(args.pairs):
        results.loads.append(load_average())
        print(f"== pair {pair + 1}/{args.pairs}, load {results.loads[-1]:.2f}", flush=True)
        for label, processes, local_queue, jobs, window in throughput_measures(args):
            for system in order(systems, pair):
                action = partial(
                    runs.run_throughput,
                    url,
                    Config(system, processes, local_queue),
                    jobs,
                    window=window,
                    count_connections=label.startswith("scale"),
                )
                run_one(results, label, pair, system, action)
        if "latency" in args.only:
            for local_queue in LATENCY_QUEUES:
                # the raw floor has no local queue: it runs once, beside the first
                with_raw = [*systems, "raw"] if local_queue == LATENCY_QUEUES[0] else systems
                for system in order(with_raw, pair):
                    queue = 0 if system == "raw" else local_queue
                    samples = partial(
                        runs.run_latency,
                        url,
                        system,
                        queue,
                        args.latency_samples,
                        args.interval_ms / 1000,
                        args.warmup,
                    )
                    run_one(results, latency_label(queue), pair, system, samples, latency=True)
    print(f"\nmeasured in {time.perf_counter() - started:.0f}s")
    return results


def throughput_measures(args: argparse.Namespace) -> list[tuple[str, int, int, int, int]]:
    """(label, processes, local queue, jobs, progress window) of each throughput measure."""
    out: list[tuple[str, int, int, int, int]] = []
    if "throughput" in args.only:
        for processes, lq in THROUGHPUT:
            out.append(
                (f"throughput, {Config('', processes, lq).label}", processes, lq, args.jobs, 0)
            )
    for processes in args.scale:
        label = f"scale, {processes} processes" if processes > 1 else "scale, 1 process"
        out.append((label, processes, LOCAL_QUEUE, args.jobs, 0))
    if args.backlog:
        window = max(args.backlog // 10, 1)
        label = f"backlog of {args.backlog:,}, 1 process"
        if args.backlog_queue != LOCAL_QUEUE:
            label += f", local queue {args.backlog_queue}"
        out.append((label, 1, args.backlog_queue, args.backlog, window))
    return out


def latency_label(local_queue: int) -> str:
    if local_queue == 0:
        return "latency, raw floor"
    return f"latency, {'local queue 500' if local_queue > 0 else 'no local queue'}"


def run_one(
    results: Results,
    label: str,
    pair: int,
    system: str,
    action: Callable[[], Any],
    *,
    latency: bool = False,
) -> None:
    print(f"[pair {pair + 1}] {system}: {label} ...", flush=True)
    try:
        value = action()
    except RunFailed as exc:
        first = str(exc).splitlines()[0]
        results.dropped.append(f"pair {pair + 1}, {label}, {system}: {first}")
        print(f"  FAILED, pair dropped from this measure: {exc}", flush=True)
        return
    if latency:
        results.slot(results.latency, label)[pair].update(value)
        print(f"  p50 {runs.percentile(value[system], 50):.2f} ms", flush=True)
    else:
        results.slot(results.throughput, label)[pair][system] = value
        print(f"  {value.seconds:.2f}s ({value.rate:,.0f} jobs/s)", flush=True)


# --------------------------------------------------------------------------- report


def paired(rows: list[dict[str, Any]], a: str, b: str) -> list[tuple[Any, Any]]:
    return [(row[a], row[b]) for row in rows if a in row and b in row]


def _cell(values: Sequence[float], fmt: str) -> str:
    return format(statistics.median(values), fmt) if values else "-"


def report(results: Results, args: argparse.Namespace) -> dict[str, Any]:
    """Print the tables; return the summary (for --json)."""
    summary: dict[str, Any] = {}
    print(f"\n{'measure':<50} {'zodworker':>10} {'graphile':>10}  ratio: median of pairs")
    print(f"{'-' * 50} {'-' * 10} {'-' * 10}  {'-' * 44}")
    for label, rows in results.throughput.items():
        ours = [r["zodworker"].rate for r in rows if "zodworker" in r]
        theirs = [r["graphile-worker"].rate for r in rows if "graphile-worker" in r]
        ratios = [z.rate / g.rate for z, g in paired(rows, "zodworker", "graphile-worker")]
        text = spread(ratios).ratio() if ratios else "-"
        print(
            f"{label + ' (jobs/s)':<50} {_cell(ours, ',.0f'):>10} {_cell(theirs, ',.0f'):>10}"
            f"  {text}"
        )
        summary[label] = {"zodworker": ours, "graphile-worker": theirs, "ratios": ratios}
    for label, samples in results.latency.items():
        if label.endswith("raw floor"):
            continue
        for p in (50, 99):
            ours = [runs.percentile(r["zodworker"], p) for r in samples if "zodworker" in r]
            theirs = [
                runs.percentile(r["graphile-worker"], p) for r in samples if "graphile-worker" in r
            ]
            ratios = [
                runs.percentile(g, p) / runs.percentile(z, p)
                for z, g in paired(samples, "zodworker", "graphile-worker")
            ]
            text = spread(ratios).ratio() if ratios else "-"
            name = f"{label} p{p} (ms)"
            print(f"{name:<50} {_cell(ours, '.2f'):>10} {_cell(theirs, '.2f'):>10}  {text}")
            summary[name] = {"zodworker": ours, "graphile-worker": theirs, "ratios": ratios}
    print("\nratio > 1: zodworker better (throughput ours/theirs, latency theirs/ours)")
    _latency_floor(results, summary, args.interval_ms)
    _scale_and_backlog(results, summary)
    _details(results)
    print(
        f"\nload average (1 min) before each pair: {', '.join(f'{x:.2f}' for x in results.loads)}"
    )
    for line in results.dropped:
        print(f"dropped: {line}")
    print(
        f"\n{SETTINGS}\n  workload  throughput: --jobs {args.jobs}; latency: "
        f"{args.latency_samples} jobs per run after {args.warmup} warm-up, "
        f"{args.interval_ms:g} ms apart"
        + (f"; backlog: local queue {args.backlog_queue} for both" if args.backlog else "")
    )
    summary["loads"] = results.loads
    summary["dropped"] = results.dropped
    return summary


def _latency_floor(results: Results, summary: dict[str, Any], interval_ms: float) -> None:
    floor = results.latency.get(latency_label(0))
    if not floor:
        return
    print("\nlatency against the raw floor (LISTEN + one claiming UPDATE), per pair:")
    raw = [runs.percentile(r["raw"], 50) for r in floor if "raw" in r]
    adds = [runs.percentile(r["raw add"], 50) for r in floor if "raw add" in r]
    print(
        f"  raw floor p50 {spread(raw).value(' ms')}; of it, the add's own round trip "
        f"(insert, NOTIFY, commit) {spread(adds).value(' ms')}"
    )
    summary["raw floor p50 (ms)"] = raw
    summary["raw add p50 (ms)"] = adds
    idle = [runs.percentile(r["select 1, idle"], 50) for r in floor if "select 1, idle" in r]
    busy = [runs.percentile(r["select 1, busy"], 50) for r in floor if "select 1, busy" in r]
    if idle and busy:
        print(
            f"  a bare round trip (select 1) {spread(idle).value(' ms')} after "
            f"{interval_ms:g} ms idle, {spread(busy).value(' ms')} back to back: "
            "what waking sleeping processes costs here, several times in every add and claim"
        )
        summary["select 1 idle p50 (ms)"] = idle
        summary["select 1 busy p50 (ms)"] = busy
    for label in (latency_label(LOCAL_QUEUE), latency_label(-1)):
        rows = results.latency.get(label, [])
        ceiling = [
            runs.percentile(row["graphile-worker"], 50) / runs.percentile(base["raw"], 50)
            for row, base in zip(rows, floor, strict=False)
            if "graphile-worker" in row and "raw" in base
        ]
        if ceiling:
            print(
                f"  best p50 ratio any worker could reach ({label[9:]}: graphile-worker p50 / "
                f"floor p50) {spread(ceiling).ratio()}"
            )
            summary[f"{label} best possible p50 ratio"] = ceiling
        for system in ("zodworker", "graphile-worker"):
            over = [
                runs.percentile(row[system], 50) - runs.percentile(base["raw"], 50)
                for row, base in zip(rows, floor, strict=False)
                if system in row and "raw" in base
            ]
            tail = [
                runs.percentile(row[system], 99) / runs.percentile(row[system], 50)
                for row in rows
                if system in row
            ]
            if over:
                print(
                    f"  {system:<16} {label[9:]:<15} p50 over the floor "
                    f"{spread(over).value(' ms')}; p99/p50 {spread(tail).value('', 2)}"
                )
                summary[f"{label} {system} p50 over floor (ms)"] = over


def _scale_and_backlog(results: Results, summary: dict[str, Any]) -> None:
    cores = os.cpu_count() or 1
    scale = {k: v for k, v in results.throughput.items() if k.startswith("scale")}
    if scale:
        print(
            "\nscaling out (local queue 500; medians over pairs): jobs/s, client connections"
            " per process, database CPU per job"
        )
        for label, rows in scale.items():
            processes = int(label.split()[1])
            for system in ("zodworker", "graphile-worker"):
                runs_of = [r[system] for r in rows if system in r]
                if not runs_of:
                    continue
                conns = [t.connections / processes for t in runs_of]
                db_us = [(t.other_cpu_s(cores) or 0) / t.jobs * 1e6 for t in runs_of]
                print(
                    f"  {label[7:]:<12} {system:<16} {_cell([t.rate for t in runs_of], ',.0f'):>8}"
                    f" jobs/s  {_cell(conns, '.1f'):>5} conn/process  {_cell(db_us, '.0f'):>5}"
                    " us DB CPU/job"
                )
    for label, rows in results.throughput.items():
        if not label.startswith("backlog"):
            continue
        print(f"\n{label}: jobs/s per tenth of the drain (median over pairs), memory")
        for system in ("zodworker", "graphile-worker"):
            runs_of = [r[system] for r in rows if system in r]
            if not runs_of:
                continue
            windows = [_window_rates(t) for t in runs_of]
            per_window = [
                statistics.median(w[i] for w in windows if len(w) > i)
                for i in range(max(len(w) for w in windows))
            ]
            rss = [mb for t in runs_of for _, mb in t.rss_mb]
            print(
                f"  {system:<16} whole drain {_cell([t.rate for t in runs_of], ',.0f')} jobs/s;"
                f" windows [{', '.join(f'{x:,.0f}' for x in per_window)}]"
            )
            if rss:
                print(
                    f"  {'':<16} RSS {min(rss):.0f}-{max(rss):.0f} MB "
                    f"(first {runs_of[0].rss_mb[0][1]:.0f}, last {runs_of[0].rss_mb[-1][1]:.0f})"
                )
            summary[f"{label} {system} windows"] = per_window
            summary[f"{label} {system} rss_mb"] = [t.rss_mb for t in runs_of]


def _window_rates(t: Throughput) -> list[float]:
    rates, last_n, last_t = [], 0, 0.0
    for n, s in t.progress:
        if s > last_t and n > last_n:  # the first entry (0 jobs) is the first handler start
            rates.append((n - last_n) / (s - last_t))
        last_n, last_t = n, s
    return rates


def _details(results: Results) -> None:
    cores = os.cpu_count() or 1
    print("\ndetails per pair (jobs/s; worker CPU us/job; other CPU us/job, mostly PostgreSQL):")
    for label, rows in results.throughput.items():
        for system in ("zodworker", "graphile-worker"):
            cells = []
            for row in rows:
                t = row.get(system)
                if t is None:
                    cells.append("-")
                    continue
                other = t.other_cpu_s(cores)
                cells.append(
                    f"{t.rate:,.0f} ({t.worker_cpu_s / t.jobs * 1e6:.0f}; "
                    f"{other / t.jobs * 1e6 if other is not None else 0:.0f})"
                )
            print(f"  {label:<40} {system:<16} {' | '.join(cells)}")


def print_profile(path: str, limit: int = 25) -> None:
    import pstats

    for key in ("tottime", "cumulative"):
        print(f"\n--- zodworker profile ({path}), top {limit} by {key} ---", flush=True)
        stats = pstats.Stats(path)
        stats.strip_dirs().sort_stats(key).print_stats(limit)


# --------------------------------------------------------------------------- command line


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--database-url")
    parser.add_argument(
        "--pairs",
        type=int,
        default=DEFAULT_PAIRS,
        help=f"interleaved pairs per measure (default {DEFAULT_PAIRS})",
    )
    parser.add_argument("--jobs", type=int, default=20_000, help="jobs per throughput run")
    parser.add_argument("--latency-samples", type=int, default=200, help="jobs per latency run")
    parser.add_argument("--interval-ms", type=float, default=20.0)
    parser.add_argument("--warmup", type=int, default=10, help="latency jobs not counted")
    parser.add_argument(
        "--only",
        default="throughput,latency",
        help="comma-separated: throughput, latency (default both; '' for none)",
    )
    parser.add_argument(
        "--scale",
        default="",
        help="worker process counts to draw the scaling curve for, e.g. 1,2,4,8",
    )
    parser.add_argument(
        "--backlog", type=int, default=0, help="also drain this many queued jobs (e.g. 1000000)"
    )
    parser.add_argument(
        "--backlog-queue",
        type=int,
        default=LOCAL_QUEUE,
        help=f"local queue size of both systems in the backlog run (default {LOCAL_QUEUE})",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="5,000 jobs, 100 latency samples, 2 pairs: a smoke run, not a result",
    )
    parser.add_argument("--no-node", action="store_true", help="measure zodworker only")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    parser.add_argument(
        "--profile",
        metavar="FILE",
        help="afterwards, run the 1-process zodworker throughput under cProfile, "
        "save the stats to FILE and print the top functions",
    )
    args = parser.parse_args(argv)
    args.only = {part.strip() for part in args.only.split(",") if part.strip()}
    args.scale = [int(n) for n in args.scale.split(",") if n.strip()]
    if args.quick:
        args.jobs, args.latency_samples, args.pairs = 5_000, 100, 2
    if args.pairs < 1:
        parser.error("--pairs must be at least 1")
    return args


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_zw-worker":
        runs.zw_worker_main(sys.argv[2:])
        return
    args = parse_args()
    url = resolve_connection(args.database_url)
    systems = [s for s in runs.SYSTEMS if s == "zodworker" or not args.no_node]
    runs.setup_schemas(url, with_node=not args.no_node)
    results = measure(args, url, systems)
    summary = report(results, args)
    if args.json:
        raw = {
            k: [{s: asdict(t) for s, t in row.items()} for row in rows]
            for k, rows in results.throughput.items()
        }
        Path(args.json).write_text(
            json.dumps(
                {
                    "summary": summary,
                    "throughput": raw,
                    "args": {**vars(args), "only": sorted(args.only)},
                },
                indent=1,
                default=str,
            )
        )
    if args.profile:
        print("\nprofiling zodworker (1 process, local queue 500) ...", flush=True)
        result = runs.run_throughput(
            url, Config("zodworker", 1, LOCAL_QUEUE), args.jobs, profile=args.profile
        )
        print(f"  {result.seconds:.2f}s under cProfile")
        print_profile(args.profile)


if __name__ == "__main__":
    main()
