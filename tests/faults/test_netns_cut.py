"""A real link cut: a worker process in a network namespace of its own loses its link to the
database (the veth pair is taken down: packets are dropped, nothing is reset) for longer than
its lease, while another worker runs on the host. No two runs of one job overlap in the named
queue, nothing is lost and no queue stays locked.

Root only (``ip netns``); skipped with a message elsewhere. The database side of the link is a
TCP forwarder on the host end of the veth pair, in front of the test server, so the shared
server is never touched.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import subprocess
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.procapp import add_jobs, job_count, scalar
from tests.support.procs import Procs, poll_until
from tests.support.proxy import TcpProxy
from zodworker import JobSpec

HEARTBEAT = 0.2
LEASE = 1.0

APP = textwrap.dedent(
    """
    import asyncio, json, os, time

    def log(**fields):
        with open(os.environ["RUN_LOG"], "a") as f:
            f.write(json.dumps(fields) + "\\n")

    async def work(payload, helpers):
        start = time.time()
        log(event="start", pid=os.getpid(), n=payload["n"], at=start)
        try:
            await asyncio.sleep(payload["seconds"])
        except asyncio.CancelledError:
            log(event="end", pid=os.getpid(), n=payload["n"], start=start, at=time.time(),
                outcome="aborted")
            raise
        log(event="end", pid=os.getpid(), n=payload["n"], start=start, at=time.time(),
            outcome="done")

    TASKS = {"work": work}
    """
)

DRIVER = textwrap.dedent(
    """
    import asyncio, sys
    import zodworker
    from cutapp import TASKS

    async def main():
        pool = await zodworker.run(
            TASKS, connection=sys.argv[1], concurrency=2, heartbeat_interval=float(sys.argv[2]),
            recovery_timeout=float(sys.argv[3]), poll_interval=0.2, handle_signals=True,
        )
        print("ready", flush=True)
        await pool.wait()

    asyncio.run(main())
    """
)


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


@pytest.fixture
def netns() -> Iterator[tuple[str, str, str]]:
    """A network namespace linked to the host by a veth pair: (namespace, host device,
    host address)."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("a real link cut needs root and iproute2 (ip netns); the proxy test covers it")
    tag = f"{os.getpid() % 10000}"
    name, host_dev, ns_dev = f"zwtest{tag}", f"zwh{tag}", f"zwn{tag}"
    octet = os.getpid() % 250 + 1
    host_ip, ns_ip = f"10.231.{octet}.1", f"10.231.{octet}.2"
    try:
        _ip("netns", "add", name)
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"cannot create a network namespace here: {exc.stderr.decode().strip()}")
    try:
        _ip("link", "add", host_dev, "type", "veth", "peer", "name", ns_dev)
        _ip("link", "set", ns_dev, "netns", name)
        _ip("addr", "add", f"{host_ip}/30", "dev", host_dev)
        _ip("link", "set", host_dev, "up")
        _ip("netns", "exec", name, "ip", "addr", "add", f"{ns_ip}/30", "dev", ns_dev)
        _ip("netns", "exec", name, "ip", "link", "set", ns_dev, "up")
        _ip("netns", "exec", name, "ip", "link", "set", "lo", "up")
        yield name, host_dev, host_ip
    finally:
        subprocess.run(["ip", "link", "del", host_dev], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)


def read_log(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_a_worker_behind_a_cut_link_never_overlaps_the_one_that_takes_over(
    db_url: str, tmp_path: Path, procs: Procs, netns: tuple[str, str, str]
) -> None:
    name, host_dev, host_ip = netns
    (tmp_path / "cutapp.py").write_text(APP)
    (tmp_path / "cutdriver.py").write_text(DRIVER)
    log = tmp_path / "runs.jsonl"
    env = {"RUN_LOG": str(log), "PYTHONPATH": f"{tmp_path}:{Path.cwd()}"}
    proxy = TcpProxy(db_url, host=host_ip)
    try:
        add_jobs(
            db_url,
            [JobSpec(identifier="work", queue_name="serial", payload={"n": 0, "seconds": 4})]
            + [
                JobSpec(identifier="work", queue_name="serial", payload={"n": n, "seconds": 0.05})
                for n in range(1, 11)
            ],
        )
        args = ("cutdriver.py", str(HEARTBEAT), str(LEASE))
        inside = procs.python(
            "-c",
            "import os, sys; os.execvp('ip', ['ip', 'netns', 'exec', sys.argv[1], sys.executable,"
            " *sys.argv[2:]])",
            name,
            args[0],
            proxy.url(db_url),
            *args[1:],
            env=env,
        )
        inside.wait_for("ready", within=60)
        poll_until(
            lambda: any(r["event"] == "start" and r["n"] == 0 for r in read_log(log)),
            within=30,
            what="the worker in the namespace to start job 0",
        )
        outside = procs.python(args[0], db_url, *args[1:], env=env)
        outside.wait_for("ready", within=60)
        _ip("link", "set", host_dev, "down")
        cut_at = time.time()
        poll_until(
            lambda: any(
                r["event"] == "start" and r["n"] == 0 and r["pid"] == outside.pid
                for r in read_log(log)
            ),
            within=15,
            what="the host worker to take job 0 over",
        )
        time.sleep(1.0)
        _ip("link", "set", host_dev, "up")
        healed_at = time.time()
        poll_until(lambda: job_count(db_url) == 0, within=60, what="every job to finish")
        for proc in (inside, outside):
            proc.send(signal.SIGTERM)
            proc.wait_exit(60)
    finally:
        proxy.close()

    runs = [r for r in read_log(log) if r["event"] == "end"]
    first = next(r for r in runs if r["n"] == 0 and r["pid"] != outside.pid)
    takeover = next(r for r in runs if r["n"] == 0 and r["pid"] == outside.pid)
    ordered = sorted(runs, key=lambda r: r["start"])
    gaps = [b["start"] - a["at"] for a, b in itertools.pairwise(ordered)]
    print(
        f"\nlink down {healed_at - cut_at:.1f}s (lease {LEASE}s, heartbeat {HEARTBEAT}s): the cut"
        f" worker aborted job 0 {first['at'] - cut_at:.2f}s after the cut, the host worker started"
        f" it {takeover['start'] - cut_at:.2f}s after; smallest gap between runs in the serial"
        f" queue {min(gaps) * 1000:.0f} ms"
    )
    assert first["outcome"] == "aborted" and first["at"] < takeover["start"]
    assert min(gaps) >= 0, "two runs overlapped in a named queue"
    assert sorted(r["n"] for r in runs if r["outcome"] == "done") == list(range(11))
    locked = scalar(
        db_url,
        "select count(*) from graphile_worker._private_job_queues where locked_by is not null",
    )
    assert locked == 0
