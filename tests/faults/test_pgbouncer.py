"""zodworker behind a real PgBouncer, in session and in transaction pooling mode.

Session mode needs nothing special. Transaction mode keeps neither prepared statements nor
LISTEN between transactions: the default worker must stop at once with an error that names
the setting to change, and the usual recipe (no prepared statements, a direct URL for
LISTEN) must run jobs with a low enqueue-to-start latency; poll-only runs them too.
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from tests.support.pgbouncer import PgBouncer
from tests.support.pools import pool_options
from zodworker import ConfigError, JobHelpers, Store, WorkerOptions, WorkerPool

pytestmark = pytest.mark.anyio


@pytest.fixture
def session_bouncer(db_url: str) -> Iterator[PgBouncer]:
    # session pooling gives each client a server connection for its whole session
    bouncer = PgBouncer(db_url, "session", server_pool_size=20)
    try:
        yield bouncer
    finally:
        bouncer.close()


@pytest.fixture
def transaction_bouncer(db_url: str) -> Iterator[PgBouncer]:
    bouncer = PgBouncer(db_url, "transaction")
    try:
        yield bouncer
    finally:
        bouncer.close()


def options(url: str, **overrides: Any) -> WorkerOptions:
    defaults = {"concurrency": 4, "poll_interval": 2.0, "heartbeat_interval": 0.5}
    return pool_options(url, **{**defaults, "recovery_timeout": 3.0, **overrides})


async def run_jobs(pool: WorkerPool, enqueue_url: str, count: int, interval: float) -> list[float]:
    """Add ``count`` jobs one at a time through ``enqueue_url``; return enqueue-to-start
    latencies in milliseconds."""
    added: dict[int, float] = {}
    started: dict[int, float] = {}
    done = asyncio.Event()

    async def record(payload: Any, helpers: JobHelpers) -> None:
        started[payload["n"]] = time.perf_counter()
        if len(started) == count:
            done.set()

    pool.replace_tasks({"record": record})
    async with await psycopg.AsyncConnection.connect(
        enqueue_url, autocommit=True, prepare_threshold=None
    ) as conn:
        for n in range(count):
            added[n] = time.perf_counter()
            await Store().add_job(conn, "record", {"n": n})
            await asyncio.sleep(interval)
        await asyncio.wait_for(done.wait(), 30)
    return [(started[n] - added[n]) * 1000 for n in range(count)]


async def test_the_default_worker_runs_jobs_through_session_pooling(
    db_url: str, session_bouncer: PgBouncer
) -> None:
    url = session_bouncer.url(db_url)
    pool = WorkerPool({}, options(url))
    async with pool:
        latencies = await run_jobs(pool, url, 40, 0.02)
    p95 = statistics.quantiles(latencies, n=20)[18]
    p50 = statistics.median(latencies)
    print(f"\nsession pooling, default worker: p50 {p50:.1f} ms, p95 {p95:.1f} ms")
    assert p95 < 50


@pytest.mark.parametrize(
    ("settings", "field"),
    [({}, None), ({"use_prepared_statements": False}, "listen_connection")],
    ids=["defaults", "no-prepared-statements-only"],
)
async def test_transaction_pooling_without_the_recipe_fails_fast_and_says_what_to_set(
    db_url: str, transaction_bouncer: PgBouncer, settings: dict[str, Any], field: str | None
) -> None:
    pool = WorkerPool({"t": _noop}, options(transaction_bouncer.url(db_url), **settings))
    started = time.monotonic()
    with pytest.raises(ConfigError) as info:
        await pool.start()
    took = time.monotonic() - started
    print(f"\ntransaction pooling, {settings or 'defaults'}: stopped in {took:.2f}s: {info.value}")
    assert took < 10
    assert info.value.field in (
        {field} if field else {"use_prepared_statements", "listen_connection"}
    )
    assert "--listen-connection" in str(info.value) and "--poll-only" in str(info.value)
    if settings.get("use_prepared_statements", True):
        assert "--no-prepared-statements" in str(info.value)
    await pool.stop()


async def test_the_recipe_runs_jobs_through_transaction_pooling_with_low_latency(
    db_url: str, transaction_bouncer: PgBouncer
) -> None:
    url = transaction_bouncer.url(db_url)
    pool = WorkerPool({}, options(url, use_prepared_statements=False, listen_connection=db_url))
    async with pool:
        latencies = await run_jobs(pool, url, 100, 0.02)
    p95 = statistics.quantiles(latencies, n=20)[18]
    print(
        f"\ntransaction pooling with the recipe (queries and enqueue through PgBouncer, LISTEN"
        f" direct): p50 {statistics.median(latencies):.1f} ms, p95 {p95:.1f} ms"
    )
    assert p95 < 50


async def test_poll_only_runs_jobs_through_transaction_pooling(
    db_url: str, transaction_bouncer: PgBouncer, caplog: pytest.LogCaptureFixture
) -> None:
    url = transaction_bouncer.url(db_url)
    caplog.set_level("INFO", logger="zodworker")
    pool = WorkerPool(
        {}, options(url, use_prepared_statements=False, poll_only=True, poll_interval=0.1)
    )
    async with pool:
        latencies = await run_jobs(pool, url, 10, 0.02)
    assert len(latencies) == 10
    assert sum("poll_only" in r.message for r in caplog.records) == 1


def test_the_command_line_names_its_flags_behind_transaction_pooling(
    db_url: str, transaction_bouncer: PgBouncer, tmp_path: Any
) -> None:
    (tmp_path / "app.py").write_text("async def t(p, h):\n    pass\nTASKS = {'t': t}\n")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "zodworker",
            "-c",
            transaction_bouncer.url(db_url),
            "--app",
            "app:TASKS",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert "--no-prepared-statements" in proc.stderr or "--listen-connection" in proc.stderr


async def _noop(payload: Any, helpers: JobHelpers) -> None:
    return None
