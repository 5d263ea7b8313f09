"""One run of one system: set-up, throughput (worker processes draining a filled table) and
enqueue-to-start latency (an idle worker). Used by ``process.py``; see benchmarks/README.md.

Systems: ``zodworker``, ``graphile-worker`` (the Node package, ``graphile_process.mjs``) and,
for latency only, ``raw``: a bare LISTEN connection that claims each job with one
``UPDATE ... FOR UPDATE SKIP LOCKED`` (``raw_floor.sql``), the floor any queue on this
database and machine stands on.
"""

from __future__ import annotations

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
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from zodworker import Events, JobSpec, Store, WorkerOptions, migrate, run  # noqa: E402

ZW_SCHEMA = "zw_bench"
GW_SCHEMA = "gw_bench"
SCHEMAS = {"zodworker": ZW_SCHEMA, "graphile-worker": GW_SCHEMA, "raw": ZW_SCHEMA}
SYSTEMS = ("zodworker", "graphile-worker")
CONCURRENCY = 10
LOCAL_QUEUE = 500
ADD_BATCH = 1000
NODE_SCRIPT = Path(__file__).with_name("graphile_process.mjs")
RAW_SQL = Path(__file__).with_name("raw_floor.sql")


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
        return f"{procs}, {lq}"


@dataclass
class Throughput:
    """What one throughput run measured."""

    jobs: int
    seconds: float
    handled: list[int]
    worker_cpu_s: float
    startup_s: float  # go -> run() returned (connect, schema check), slowest process
    machine_busy: float | None  # share of all cores busy during the run (0..1)
    from_go_s: float = 0.0  # go -> drained (``seconds``: first handler start -> drained)
    connections: int = 0  # most client connections seen at once (all processes)
    progress: list[tuple[int, float]] = field(default_factory=list)  # (handled, s), process 1
    rss_mb: list[tuple[float, float]] = field(default_factory=list)  # (s, MB), process 1

    @property
    def rate(self) -> float:
        return self.jobs / self.seconds

    def other_cpu_s(self, cores: int) -> float | None:
        """CPU seconds the rest of the machine (mostly PostgreSQL) used during the run."""
        if self.machine_busy is None:
            return None
        window = self.from_go_s or self.seconds  # busy was sampled from go to drained
        return self.machine_busy * cores * window - self.worker_cpu_s


class RunFailed(RuntimeError):
    """A run did not finish (a worker died or hung); the pair it belongs to is dropped."""


# --------------------------------------------------------------------------- database set-up


def _node() -> Any:
    from tests.support.graphile import graphile_worker

    return graphile_worker()


def node_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("DATABASE_URL", None)
    env["NO_LOG_SUCCESS"] = "1"
    return env


def node_cmd(node: Any, *args: str) -> list[str]:
    return [str(node.node), "--input-type=module", "--eval", NODE_SCRIPT.read_text(), *args]


def setup_schemas(url: str, with_node: bool) -> None:
    """Drop and create both schemas (zodworker's migrations; graphile-worker's own)."""

    async def zodworker_side() -> None:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            for schema in (ZW_SCHEMA, GW_SCHEMA):
                await conn.execute(
                    sql.SQL("drop schema if exists {} cascade").format(sql.Identifier(schema))
                )
            await migrate(conn, schema=ZW_SCHEMA)

    asyncio.run(zodworker_side())
    if with_node:
        from tests.support.graphile import node_conninfo

        node = _node()
        subprocess.run(
            node_cmd(node, "migrate", node_conninfo(url), GW_SCHEMA),
            cwd=node.cache_dir,
            env=node_env(),
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
        batch = ADD_BATCH if jobs <= 100_000 else 10 * ADD_BATCH
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await conn.execute(sql.SQL("truncate {}._private_jobs").format(sql.Identifier(schema)))
            for start in range(0, jobs, batch):
                specs = [
                    JobSpec(identifier="noop", payload={"i": i})
                    for i in range(start, min(jobs, start + batch))
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


def cpu_busy() -> tuple[int, int] | None:
    """(busy, total) jiffies of all cores, from /proc/stat (Linux only)."""
    try:
        with open("/proc/stat") as fh:
            values = [int(v) for v in fh.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    return sum(values) - idle, sum(values)


def rss_mb(pid: int) -> float | None:
    """Resident memory of process ``pid`` in MB (Linux only)."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        return None
    return None


# --------------------------------------------------------------------------- throughput


def _spawn(
    config: Config, url: str, window: int, profile: str | None, stderr: IO[str]
) -> subprocess.Popen[str]:
    args = [str(CONCURRENCY), str(config.local_queue), str(window)]
    if config.system == "zodworker":
        cmd = [sys.executable, str(Path(__file__).with_name("process.py")), "_zw-worker", url]
        cmd += [ZW_SCHEMA, *args, *([profile] if profile else [])]
        cwd, env = None, None
    else:
        from tests.support.graphile import node_conninfo

        node = _node()
        cmd = node_cmd(node, "worker", node_conninfo(url), GW_SCHEMA, *args)
        cwd, env = node.cache_dir, node_env()
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
    tail = stderr.read()[-2000:]
    raise RunFailed(f"{what}\n--- worker stderr (end) ---\n{tail}")


def run_throughput(
    url: str,
    config: Config,
    jobs: int,
    *,
    window: int = 0,
    count_connections: bool = False,
    profile: str | None = None,
) -> Throughput:
    """Fill the system's table with ``jobs`` no-op jobs, start ``config.processes`` worker
    processes, say "go" and time until the table is empty. ``window`` > 0: the first process
    reports every ``window`` jobs it ran (progress) and its memory is sampled every second.
    ``count_connections``: sample the client connections every fifth poll."""
    schema = SCHEMAS[config.system]
    fill(url, schema, jobs)
    ident = sql.Identifier(schema)
    empty_query = sql.SQL("select exists (select 1 from {}._private_jobs)").format(ident)
    clients = sql.SQL(
        "select count(*) from pg_stat_activity where datname = current_database()"
        " and backend_type = 'client backend' and pid <> pg_backend_pid()"
    )
    poll_every = 0.01 if jobs <= 100_000 else 0.25
    timeout = 60 + jobs / 500
    with (
        tempfile.TemporaryFile("w+") as stderr,
        psycopg.connect(url, autocommit=True) as conn,
    ):
        procs = [_spawn(config, url, window, profile, stderr) for _ in range(config.processes)]
        for proc in procs:
            assert proc.stdout is not None
            if proc.stdout.readline().strip() != "ready":
                _fail(procs, stderr, f"{config.system} worker did not start")
        cpu0 = cpu_busy()
        t0 = time.perf_counter()
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        most, memory, polls, next_rss = 0, [], 0, 0.0
        while True:
            row = conn.execute(empty_query).fetchone()
            if row is not None and not row[0]:
                break
            now = time.perf_counter() - t0
            if now > timeout:
                _fail(procs, stderr, f"{config.system}: jobs left after {timeout:.0f}s")
            if any(proc.poll() is not None for proc in procs):
                _fail(procs, stderr, f"{config.system} worker exited early")
            polls += 1
            if (
                count_connections and polls % 5 == 1
            ):  # connections: often enough to see the pool fill up
                counted = conn.execute(clients).fetchone()
                most = max(most, int(counted[0]) if counted else 0)
            if window and now >= next_rss:
                if (mb := rss_mb(procs[0].pid)) is not None:
                    memory.append((now, mb))
                next_rss = now + 1.0
            time.sleep(poll_every)
        drained = time.time()
        elapsed = time.perf_counter() - t0
        cpu1 = cpu_busy()
        reports = _stop(procs, stderr, config.system)
    handled = [int(r["handled"]) for r in reports]
    if sum(handled) != jobs:
        print(f"  warning: {config.system} ran {sum(handled)} jobs for {jobs} added", flush=True)
    busy = None
    if cpu0 and cpu1 and cpu1[1] > cpu0[1]:
        busy = (cpu1[0] - cpu0[0]) / (cpu1[1] - cpu0[1])
    started = [float(r["first_start"]) for r in reports if r.get("first_start")]
    return Throughput(
        jobs,
        drained - min(started) if started else elapsed,
        handled,
        sum(float(r["cpu_s"]) for r in reports),
        max(float(r["startup_s"]) for r in reports),
        busy,
        from_go_s=elapsed,
        connections=most,
        progress=[(int(n), float(t)) for n, t in reports[0].get("progress", [])],
        rss_mb=memory,
    )


def _stop(procs: list[subprocess.Popen[str]], stderr: IO[str], system: str) -> list[dict[str, Any]]:
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("stop\n")
        proc.stdin.close()
    reports = []
    for proc in procs:
        assert proc.stdout is not None
        out = proc.stdout.read()
        if proc.wait(timeout=60) != 0 or not out.strip():
            _fail(procs, stderr, f"{system} worker failed to stop cleanly")
        reports.append(json.loads(out.strip().splitlines()[-1]))
    return reports


def _int_env(name: str) -> int | None:
    value = os.environ.get(name)
    return int(value) if value else None


def zw_worker_main(argv: list[str]) -> None:
    """Child process: ``_zw-worker URL SCHEMA CONCURRENCY LOCAL_QUEUE WINDOW [PROFILE]`` (the
    counterpart of graphile_process.mjs's ``worker`` mode)."""
    url, schema, concurrency, local_queue, window_arg = argv[:5]
    profile_path = argv[5] if len(argv) > 5 else None
    window = int(window_arg)
    handled = 0
    progress: list[tuple[int, float]] = []
    t0 = 0.0
    first = 0.0  # wall clock of the first handler start (the parent's clock starts there)

    async def noop(payload: Any, helpers: Any) -> None:
        nonlocal handled, first
        if not handled:
            first = time.time()
            progress.append((0, time.perf_counter() - t0))
        handled += 1
        if window and handled % window == 0:
            progress.append((handled, time.perf_counter() - t0))

    async def main() -> None:
        nonlocal t0
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
            history=os.environ.get("ZW_BENCH_HISTORY") == "1",  # benchmarks/history.py
            # experiments: "always" / "never" instead of the default "auto"
            local_queue_fetch_ahead=os.environ.get("ZW_BENCH_FETCH_AHEAD", "auto"),  # type: ignore[arg-type]
            # experiments: a batch cap instead of the default 4 x local_queue_size
            local_queue_max_size=_int_env("ZW_BENCH_MAX_BATCH") if int(local_queue) > 0 else None,
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
        if profiler is not None and profile_path:
            profiler.disable()
            profiler.dump_stats(profile_path)
        report = {
            "handled": handled,
            "cpu_s": cpu,
            "startup_s": startup,
            "first_start": first,
            "progress": progress,
        }
        print(json.dumps(report), flush=True)

    asyncio.run(main())


# --------------------------------------------------------------------------- latency


class _Clock:
    """Added/started times of ``total`` numbered jobs; set when all have started."""

    def __init__(self, total: int) -> None:
        self.added = [0.0] * total
        self.add_returned = [0.0] * total
        self.started = [0.0] * total
        self.seen = 0
        self.all_started = asyncio.Event()

    def start(self, i: int) -> None:
        self.started[i] = time.perf_counter()
        self.seen += 1
        if self.seen == len(self.started):
            self.all_started.set()

    async def add_all(self, url: str, interval: float) -> None:
        """Add the jobs one at a time, ``interval`` apart, over a connection of their own."""
        store = Store(ZW_SCHEMA)
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            t0 = time.perf_counter()
            for i in range(len(self.added)):
                delay = t0 + i * interval - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                self.added[i] = time.perf_counter()
                await store.add_job(conn, "noop", {"i": i})
                self.add_returned[i] = time.perf_counter()
            await asyncio.wait_for(self.all_started.wait(), 60)

    def latencies(self, warmup: int) -> list[float]:
        return [(s - a) * 1000 for a, s in zip(self.added, self.started, strict=True)][warmup:]

    def add_times(self, warmup: int) -> list[float]:
        """How long each add took (ms): its insert, NOTIFY and commit, the part of every
        latency that no worker can shorten."""
        pairs = zip(self.added, self.add_returned, strict=True)
        return [(r - a) * 1000 for a, r in pairs][warmup:]


async def zw_latency(
    url: str, local_queue: int, count: int, interval: float, warmup: int
) -> list[float]:
    """Idle zodworker pool in this process; jobs added from a second connection of it."""
    clock = _Clock(count + warmup)
    listening = asyncio.Event()
    events = Events()
    events.on("pool:listen:success", lambda _event: listening.set())

    async def noop(payload: Any, helpers: Any) -> None:
        clock.start(payload["i"])

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
    try:
        await asyncio.wait_for(listening.wait(), 30)
        await asyncio.sleep(0.2)  # let the first fetch finish
        await clock.add_all(url, interval)
    finally:
        await pool.stop()
    return clock.latencies(warmup)


def _raw_statements() -> dict[str, sql.Composed]:
    text = RAW_SQL.read_text()
    named: dict[str, sql.Composed] = {}
    for chunk in text.split("-- name: ")[1:]:
        name, _, body = chunk.partition("\n")
        named[name.strip()] = sql.SQL(body.strip().rstrip(";")).format(
            schema=sql.Identifier(ZW_SCHEMA)
        )
    return named


async def raw_latency(url: str, count: int, interval: float, warmup: int) -> dict[str, list[float]]:
    """The floor: a bare LISTEN connection; on each notification, claim jobs one UPDATE
    ... SKIP LOCKED at a time until none is left; the job "starts" when its claim returns.
    Claimed jobs are deleted after the clock is read (not part of the latency). Also how
    long the adds took ("raw add"): the floor is that plus the claim; and a bare round trip
    after an idle gap and back to back (:func:`_round_trips`)."""
    clock = _Clock(count + warmup)
    statements = _raw_statements()
    async with (
        await psycopg.AsyncConnection.connect(url, autocommit=True) as listener,
        await psycopg.AsyncConnection.connect(url, autocommit=True) as claimer,
    ):
        await listener.execute(sql.SQL("listen {}").format(sql.Identifier("jobs:insert")))

        async def claim_loop() -> None:
            async for _ in listener.notifies():
                while True:
                    cur = await claimer.execute(statements["claim"], prepare=True)
                    row = await cur.fetchone()
                    if row is None:
                        break
                    clock.start(int(row[1]["i"]))
                    await claimer.execute(statements["complete"], {"id": row[0]}, prepare=True)

        claiming = asyncio.ensure_future(claim_loop())
        try:
            await asyncio.sleep(0.2)
            await clock.add_all(url, interval)
        finally:
            claiming.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await claiming
        idle = await _round_trips(claimer, interval)
        busy = await _round_trips(claimer, 0.0)
    return {
        "raw": clock.latencies(warmup),
        "raw add": clock.add_times(warmup),
        "select 1, idle": idle,
        "select 1, busy": busy,
    }


async def _round_trips(conn: psycopg.AsyncConnection[Any], interval: float) -> list[float]:
    """How long 50 ``select 1`` round trips take (ms), ``interval`` apart: after an idle
    gap, as every step of a latency run is, or back to back. The difference is what waking
    a process that slept costs this machine, paid several times over by every add and
    claim of an idle system."""
    times = []
    for _ in range(50):
        if interval:
            await asyncio.sleep(interval)
        started = time.perf_counter()
        await conn.execute("select 1", prepare=True)
        times.append((time.perf_counter() - started) * 1000)
    return times


def gw_latency(url: str, local_queue: int, count: int, interval: float, warmup: int) -> list[float]:
    from tests.support.graphile import node_conninfo

    node = _node()
    args = [str(CONCURRENCY), str(local_queue), str(count), str(interval * 1000), str(warmup)]
    proc = subprocess.run(
        node_cmd(node, "latency", node_conninfo(url), GW_SCHEMA, *args),
        cwd=node.cache_dir,
        env=node_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if proc.returncode != 0:
        raise RunFailed(f"graphile-worker latency run failed:\n{proc.stderr[-2000:]}")
    latencies: list[float] = json.loads(proc.stdout.strip().splitlines()[-1])["latencies_ms"]
    return latencies


def run_latency(
    url: str, system: str, local_queue: int, count: int, interval: float, warmup: int
) -> dict[str, list[float]]:
    """Enqueue-to-start latencies (ms) of ``count`` jobs for one system, by system name
    (the raw floor adds "raw add", see :func:`raw_latency`)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("truncate {}._private_jobs").format(sql.Identifier(SCHEMAS[system])))
    vacuum(url, SCHEMAS[system])
    if system == "zodworker":
        return {system: asyncio.run(zw_latency(url, local_queue, count, interval, warmup))}
    if system == "raw":
        return asyncio.run(raw_latency(url, count, interval, warmup))
    return {system: gw_latency(url, local_queue, count, interval, warmup)}


def percentile(values: list[float], p: int) -> float:
    """The ``p``-th percentile (1..99) of ``values``."""
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1]
