"""What a worker says about the jobs it ran: an INFO line per success (can be turned off),
failures with their traceback in ``last_error`` and in the log, the outcome of each run
(``job:complete``), and a warning about jobs waiting for a task no live pool runs."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import psycopg
import pytest

from tests.support.dbtools import count_jobs, wait_until
from tests.support.pools import pool_options
from zodworker import (
    Event,
    JobHelpers,
    PermanentFailure,
    Store,
    Task,
    WorkerOptions,
    WorkerPool,
)
from zodworker.admin import Admin

pytestmark = pytest.mark.anyio
AsyncConn = psycopg.AsyncConnection[Any]


class Records(logging.Handler):
    """Keeps every record of a fresh logger (so tests never see each other's lines)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.logger = logging.getLogger(f"zodworker.test.{uuid.uuid4().hex}")
        self.logger.setLevel(logging.INFO)
        self.logger.addHandler(self)
        self.logger.propagate = False

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def about(self, job_id: int) -> list[logging.LogRecord]:
        return [r for r in self.records if getattr(r, "job_id", None) == job_id]

    def matching(self, predicate: Callable[[logging.LogRecord], bool]) -> list[logging.LogRecord]:
        return [r for r in self.records if predicate(r)]


def options(db_url: str, logs: Records, **overrides: Any) -> WorkerOptions:
    return pool_options(db_url, **{"logger": logs.logger, **overrides})


async def ok(payload: Any, helpers: JobHelpers) -> None:
    return None


def _nested_failure(payload: Any) -> None:
    raise ValueError(f"bad input {payload['n']}")


async def fails(payload: Any, helpers: JobHelpers) -> None:
    if payload.get("permanent"):
        raise PermanentFailure("not worth retrying")
    _nested_failure(payload)


async def test_a_success_logs_one_info_line_with_the_job_fields(
    db_url: str, conn: AsyncConn, store: Store
) -> None:
    logs = Records()
    async with WorkerPool({"ok": ok}, options(db_url, logs)):
        job = await store.add_job(conn, "ok", {}, queue_name="emails", max_attempts=7)
        await until(lambda: _has(logs, job.id), "the success line")
    (record,) = logs.about(job.id)
    assert record.levelno == logging.INFO
    assert record.getMessage().startswith(f"job {job.id} (ok) attempt 1/7 succeeded in ")
    fields = {k: getattr(record, k) for k in ("task", "queue", "attempt", "max_attempts")}
    assert fields == {"task": "ok", "queue": "emails", "attempt": 1, "max_attempts": 7}
    assert record.outcome == "success"  # type: ignore[attr-defined]
    assert 0 <= record.duration_ms < 10_000  # type: ignore[attr-defined]


async def test_log_jobs_false_keeps_successes_quiet_but_still_logs_failures(
    db_url: str, conn: AsyncConn, store: Store
) -> None:
    logs = Records()
    async with WorkerPool({"ok": ok, "fails": fails}, options(db_url, logs, log_jobs=False)):
        good = await store.add_job(conn, "ok", {})
        bad = await store.add_job(conn, "fails", {"n": 1}, max_attempts=3)
        await until(lambda: _has(logs, bad.id), "the failure line")
        await wait_until(
            lambda: _count(conn, good.id, 0), within=10, what="the good job to be done"
        )
    assert logs.about(good.id) == []
    (failure,) = logs.about(bad.id)
    assert failure.levelno == logging.WARNING and failure.outcome == "retry"  # type: ignore[attr-defined]


async def test_a_failure_keeps_its_traceback_in_last_error_and_the_log(
    db_url: str, conn: AsyncConn, store: Store
) -> None:
    logs = Records()
    async with WorkerPool({"fails": fails}, options(db_url, logs)):
        retry = await store.add_job(conn, "fails", {"n": 7}, max_attempts=3)
        final = await store.add_job(conn, "fails", {"permanent": True}, max_attempts=3)
        await until(lambda: _has(logs, retry.id) and _has(logs, final.id), "both lines")
    view = await Admin().get_job(conn, retry.id)
    assert view is not None and view.job.last_error is not None
    first, *rest = view.job.last_error.splitlines()
    assert first == "ValueError: bad input 7"
    assert rest[0] == "Traceback (most recent call last):"
    assert any("_nested_failure" in line for line in rest), "the frame that raised is there"

    (warning,) = logs.about(retry.id)
    assert warning.levelno == logging.WARNING
    assert warning.exc_info is not None and warning.exc_info[1] is not None
    assert "_nested_failure" in logging.Formatter().format(warning)
    (error,) = logs.about(final.id)
    assert error.levelno == logging.ERROR and error.outcome == "failed"  # type: ignore[attr-defined]
    assert "failed for good" in error.getMessage()


async def test_job_complete_carries_the_outcome_of_each_run(
    db_url: str, conn: AsyncConn, store: Store
) -> None:
    logs = Records()
    opts = options(db_url, logs)
    outcomes: dict[int, list[str]] = {}

    def record(event: Event) -> None:
        assert event.job is not None
        outcomes.setdefault(event.job.id, []).append(event.data["outcome"])

    async def slow(payload: Any, helpers: JobHelpers) -> None:
        await anyio.sleep(30)

    opts.events.on("job:complete", record)
    tasks = {"ok": ok, "fails": fails, "slow": Task(slow, timeout=0.1)}
    async with WorkerPool(tasks, opts):
        jobs = {
            "success": await store.add_job(conn, "ok", {}),
            "retry": await store.add_job(conn, "fails", {"n": 1}, max_attempts=2),
            "failed": await store.add_job(conn, "fails", {"n": 1}, max_attempts=1),
            "permanent": await store.add_job(conn, "fails", {"permanent": True}),
            "timeout": await store.add_job(conn, "slow", {}, max_attempts=2),
        }
        await until(lambda: all(j.id in outcomes for j in jobs.values()), "job:complete events")
    seen = {name: outcomes[job.id][0] for name, job in jobs.items()}
    assert seen == {
        "success": "success",
        "retry": "retry",
        "failed": "failed",
        "permanent": "failed",
        "timeout": "timeout",
    }


async def test_jobs_waiting_for_a_task_no_live_pool_runs_are_warned_about(
    db_url: str, conn: AsyncConn, store: Store
) -> None:
    logs = Records()
    overdue = datetime.now(UTC) - timedelta(minutes=5)
    typo = await store.add_job(conn, "send_emial", {}, run_at=overdue)
    await store.add_job(conn, "send_emial", {}, run_at=overdue)
    # served by the other pool, but held back by a paused queue: waiting, yet not unserved
    await Admin().pause_queue(conn, "held")
    await store.add_job(conn, "resize", {}, queue_name="held", run_at=overdue)
    other = WorkerPool({"resize": ok}, options(db_url, Records(), unserved_warning_interval=0))
    warned = options(db_url, logs, unserved_warning_interval=0.2)
    async with other, WorkerPool({"send_email": ok}, warned):
        await until(lambda: len(logs.matching(_unserved)) >= 2, "two rounds of warnings")
        tasks = await _pool_tasks(conn)
    assert sorted(tasks) == [["resize"], ["send_email"]]
    warnings = logs.matching(_unserved)
    assert {r.task for r in warnings} == {"send_emial"}  # type: ignore[attr-defined]
    first = warnings[0]
    assert first.levelno == logging.WARNING and first.waiting_jobs == 2  # type: ignore[attr-defined]
    message = first.getMessage()
    assert "2 jobs of task 'send_emial'" in message
    assert "did you mean 'send_email'" in message
    assert await count_jobs(conn) == 3, "nothing ran the misnamed jobs"
    assert typo.id


async def until(predicate: Callable[[], bool], what: str) -> None:
    """Poll a plain predicate until it holds (10 s deadline)."""

    async def check() -> bool:
        return predicate()

    await wait_until(check, within=10, what=what)


def _unserved(record: logging.LogRecord) -> bool:
    return hasattr(record, "waiting_jobs")


def _has(logs: Records, job_id: int) -> bool:
    return bool(logs.about(job_id))


async def _count(conn: AsyncConn, job_id: int, expected: int) -> bool:
    cur = await conn.execute(
        "select count(*) from graphile_worker._private_jobs where id = %s", (job_id,)
    )
    row = await cur.fetchone()
    return row is not None and row[0] == expected


async def _pool_tasks(conn: AsyncConn) -> list[list[str]]:
    cur = await conn.execute("select tasks from graphile_worker._zodworker_pools")
    return [row[0] for row in await cur.fetchall()]
