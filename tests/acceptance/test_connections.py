"""One process, one connection pool: ``zodworker run --crontab ... --watch`` and
``ZodWorker(...).initialize()`` open one pool (shared by the worker, cron, housekeeping and
enqueueing) plus the worker's LISTEN and heartbeat connections, and nothing else.

Counted in ``pg_stat_activity``: every backend of the test's own database except the
observer's. With ``max_pool_size`` 1 that is exactly three backends. The roles come from the
``application_name`` each connection carries (``zodworker:<role>:<pid>``).
"""

from __future__ import annotations

import os
import signal
from collections import Counter
from pathlib import Path
from typing import Any

import anyio.to_thread
import psycopg
import pytest
from pydantic import BaseModel

from tests.support.dbtools import wait_until
from tests.support.procs import Procs, poll_until
from zodworker import Cleanup, CronTick, JobHelpers, TaskCatalog, ZodWorker, recurring, task

ROLES = {"shared": 1, "listen": 1, "heartbeat": 1}


def backends(url: str) -> tuple[Counter[str], list[str]]:
    """(roles of zodworker's backends by application name, all other application names)
    in the database of ``url``, leaving out the observer itself."""
    with psycopg.connect(url, autocommit=True) as observer:
        rows = observer.execute(
            "select application_name from pg_stat_activity"
            " where datname = current_database() and pid <> pg_backend_pid()"
        ).fetchall()
    ours: Counter[str] = Counter()
    others = []
    for (name,) in rows:
        parts = name.split(":")
        if len(parts) == 3 and parts[0] == "zodworker":
            ours[parts[1]] += 1
        else:
            others.append(name)
    return ours, others


def wait_for_roles(url: str) -> None:
    """Poll until the database shows exactly one pool, LISTEN and heartbeat connection."""
    seen: list[tuple[Counter[str], list[str]]] = []

    def matches() -> bool:
        seen.append(backends(url))
        return seen[-1] == (Counter(ROLES), [])

    try:
        poll_until(matches, within=30, what="one pool, LISTEN and heartbeat connection")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last seen {seen[-1]}") from None


def processes_of(url: str) -> set[int]:
    """The client pids named in zodworker's application names in that database."""
    with psycopg.connect(url, autocommit=True) as observer:
        rows = observer.execute(
            "select application_name from pg_stat_activity"
            " where datname = current_database() and application_name like 'zodworker:%'"
        ).fetchall()
    return {int(name.rsplit(":", 1)[1]) for (name,) in rows}


def test_cli_run_with_crontab_and_watch_opens_one_pool(
    db_url: str, tmp_path: Path, procs: Procs
) -> None:
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "say.py").write_text('def task(payload, helpers):\n    print("said", payload)\n')
    (tmp_path / "crontab").write_text("* * * * * say ?id=every_minute\n")
    worker = procs.zodworker(
        "-c", db_url, "run", "--crontab", "crontab", "--watch", "-m", "1", "-j", "2"
    )
    worker.wait_for("running tasks say")
    wait_for_roles(db_url)
    with psycopg.connect(db_url, autocommit=True) as conn:
        known = conn.execute("select identifier from graphile_worker._private_known_crontabs")
        assert known.fetchall() == [("every_minute",)]  # the scheduler ran on the same pool
    added = procs.zodworker("-c", db_url, "add-job", "say", '{"n": 1}')
    assert added.wait_exit(60) == 0, added.output()
    worker.wait_for("said {'n': 1}")
    ours, others = backends(db_url)
    assert (ours, others) == (Counter(ROLES), []), (ours, others)
    assert processes_of(db_url) == {worker.pid}
    worker.send(signal.SIGTERM)
    assert worker.wait_exit(60) == 0, worker.output()


class Ping(BaseModel):
    n: int


@pytest.mark.anyio
async def test_client_initialize_opens_one_pool_for_everything(db_url: str) -> None:
    ran: list[int] = []

    async def ping(payload: Ping, helpers: JobHelpers) -> None:
        ran.append(payload.n)

    async def tick(when: CronTick, helpers: Any) -> None:
        return None

    catalog = TaskCatalog(ping=task(Ping, ping))
    client = ZodWorker(
        catalog=catalog,
        database_url=db_url,
        max_pool_size=1,
        recurring_tasks={"tick": recurring("* * * * *", tick)},
        cleanup=Cleanup(interval=0.05),
        reporter=lambda event, props: None,
        metrics_interval=0.05,
    )
    await client.initialize()
    try:
        await anyio.to_thread.run_sync(wait_for_roles, db_url)
        await client.enqueue("ping", {"n": 1})
        await wait_until(lambda: _async(ran == [1]), what="the job to run")
        assert backends(db_url) == (Counter(ROLES), [])
        assert processes_of(db_url) == {os.getpid()}
    finally:
        await client.stop()
    await wait_until(  # stop closed everything it opened (backends take a moment to exit)
        lambda: _async(backends(db_url) == (Counter(), [])), what="every connection to close"
    )


@pytest.mark.anyio
async def test_a_producer_only_client_opens_one_connection(db_url: str) -> None:
    async with ZodWorker(
        catalog=TaskCatalog(ping=task(Ping)), database_url=db_url, producer_only=True
    ) as client:
        await client.enqueue("ping", {"n": 2})
        assert backends(db_url) == (Counter({"shared": 1}), [])


async def _async(value: bool) -> bool:
    return value
