"""Each example runs as a user would run it, against a real database."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import psycopg

from tests.support.procs import Proc, Procs, poll_until

ROOT = Path(__file__).resolve().parents[2]


def run_example(name: str, db_url: str) -> str:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / name)],
        env={**os.environ, "DATABASE_URL": db_url},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_enqueue_in_transaction(db_url: str) -> None:
    out = run_example("enqueue_in_transaction.py", db_url).splitlines()
    assert out[0].startswith("committed: run_committed with job ")
    assert out[1:] == [
        "rolled back: the request failed after enqueueing",
        "run run_committed: 1 job(s)",
        "jobs for run_rolled_back: 0",
    ]


def test_plain_script_runs_every_job_it_enqueued(db_url: str) -> None:
    out = run_example("plain_script.py", db_url).splitlines()
    assert out[:7] == [
        "enqueued startRun job 1 (queue executions)",
        "enqueued performRunExecution job 2 (queue runs:run_1)",
        "enqueued events.invokeDispatcher job 3 (queue None)",
        "enqueued scheduleEmail job 4 (queue internal-queue)",
        "enqueued deliverEvent job 5 (queue None)",
        "enqueued deliverEvent job 6 (queue None)",
        "enqueued deliverEvent job 7 (queue None)",
    ]
    assert out[7:] == [
        'ran deliverEvent DeliverEvent {"id":"evt_0"}',
        'ran deliverEvent DeliverEvent {"id":"evt_1"}',
        'ran deliverEvent DeliverEvent {"id":"evt_2"}',
        'ran events.invokeDispatcher InvokeDispatcher {"id":"disp_1","event_record_id":"evr_1"}',
        'ran performRunExecution PerformRunExecution {"id":"run_1"}',
        'ran scheduleEmail ScheduleEmail {"to":"ada@example.com","subject":"Welcome",'
        '"template":"welcome","data":{}}',
        'ran startRun StartRun {"id":"run_1"}',
        "all 7 jobs ran; worker stopped",
    ]
    with psycopg.connect(db_url) as conn:
        assert _one(conn, "select count(*) from graphile_worker.jobs") == 0


def test_sync_producer_commits_with_the_connection(db_url: str) -> None:
    out = run_example("sync_producer.py", db_url).splitlines()
    assert out == [
        "committed: startRun job 1 (queue executions)",
        "committed: indexEndpoint job 2 (queue internal-queue)",
        "committed: deliverEvent job 3 (queue None)",
        "rolled back: the request failed after enqueueing",
        "jobs for run_sync_1: 1",
        "jobs for run_sync_2: 0",
    ]
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "select task_identifier, max_attempts, priority, run_at > now() + interval '4 minutes'"
            " from graphile_worker.jobs order by id"
        ).fetchall()
    assert rows == [
        ("startRun", 13, 0, False),
        ("indexEndpoint", 25, 2, True),
        ("deliverEvent", 25, 0, False),
    ]


def _one(conn: psycopg.Connection[Any], query: str, params: tuple[object, ...] = ()) -> Any:
    row = conn.execute(query, params).fetchone()
    return row[0] if row else None


def _run_status(conn: psycopg.Connection[Any], run_id: str) -> str | None:
    status: str | None = _one(conn, "select status from runs where id = %s", (run_id,))
    return status


def _jobs(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    return conn.execute(
        "select id, task_identifier, key, run_at > now() + interval '30 minutes'"
        " from graphile_worker.jobs order by id"
    ).fetchall()


def test_fastapi_app_over_http(db_url: str, procs: Procs) -> None:
    env = shutil.which("env")
    assert env is not None
    # Proc drops DATABASE_URL from the environment it passes on; env(1) sets it again
    uvicorn = ["uvicorn", "examples.fastapi_app:app", "--host", "127.0.0.1", "--port", "0"]
    server = Proc([env, f"DATABASE_URL={db_url}", sys.executable, "-m", *uvicorn], cwd=ROOT)
    procs.started.append(server)
    running = server.wait_for("Uvicorn running on", within=60)
    found = re.search(r"(http://127\.0\.0\.1:\d+)", running)
    assert found, running
    assert "Application startup complete." in server.output()

    with (
        httpx.Client(base_url=found.group(1), timeout=30) as http,
        psycopg.connect(db_url, autocommit=True) as db,
    ):
        # 1. a run whose execution is an hour away: startRun runs, the execution waits
        created = http.post("/runs", json={"id": "run_later", "execute_in_seconds": 3600})
        assert created.status_code == 200, created.text
        body = created.json()
        assert body["run_id"] == "run_later" and isinstance(body["job_id"], int)
        start_job = body["job_id"]
        poll_until(
            lambda: (
                _run_status(db, "run_later") == "STARTED"
                and all(job[0] != start_job for job in _jobs(db))
            ),
            within=30,
            what="startRun to mark run_later STARTED and be deleted",
        )
        [(execute_job, task, key, far)] = _jobs(db)
        assert (task, key, far) == ("performRunExecution", "job_run:EXECUTE_JOB:run_later", True)
        assert http.get("/runs/run_later").json()["status"] == "STARTED"

        # 2. canceling it removes the scheduled execution in the same transaction
        canceled = http.post("/runs/run_later/cancel")
        assert canceled.status_code == 200, canceled.text
        assert canceled.json() == {
            "run_id": "run_later",
            "status": "CANCELED",
            "removed_job_id": execute_job,
        }
        assert _jobs(db) == []
        assert _run_status(db, "run_later") == "CANCELED"
        assert http.post("/runs/run_later/cancel").status_code == 409
        assert http.post("/runs/run_nope/cancel").status_code == 404

        # 3. a run executed at once goes QUEUED -> STARTED -> COMPLETED, leaving no job
        now = http.post("/runs", json={})
        assert now.status_code == 200, now.text
        run_now = now.json()["run_id"]
        assert run_now.startswith("run_")
        poll_until(
            lambda: _run_status(db, run_now) == "COMPLETED" and not _jobs(db),
            within=30,
            what=f"{run_now} to complete",
        )

        # 4. an invalid job payload fails the request: neither the run nor its jobs exist
        bad = http.post("/runs", json={"id": "run_bad", "notify": "not-an-address"})
        assert bad.status_code == 422, bad.text
        assert bad.json()["field"] == "payload.to" and bad.json()["task"] == "scheduleEmail"
        assert _run_status(db, "run_bad") is None
        assert _jobs(db) == []
        assert http.post("/runs", json={"id": run_now}).status_code == 409

        # 5. the dashboard, mounted read-only: its links stay under the mount, no actions
        http.post("/runs", json={"id": "run_dash", "execute_in_seconds": 3600})
        poll_until(
            lambda: "performRunExecution" in http.get("/admin/jobs/jobs").text,
            within=30,
            what="the scheduled execution on the dashboard's jobs page",
        )
        overview = http.get("/admin/jobs/")
        assert overview.status_code == 200 and 'href="/admin/jobs/jobs' in overview.text
        assert http.get("/admin/jobs/static/htmx.min.js").status_code == 200
        assert 'method="post"' not in http.get("/admin/jobs/queues").text
        assert http.post("/admin/jobs/queues/pause", data={"name": "x"}).status_code == 403

    mark = server.mark()
    server.send(signal.SIGINT)
    assert server.wait_exit(within=60) == 0, server.output()
    server.wait_for("Application shutdown complete.", within=1, after=mark)
    assert "Traceback" not in server.output(), server.output()


def test_flow_control_serves_the_small_tenant_early_and_takes_a_new_limit(db_url: str) -> None:
    out = run_example("flow_control.py", db_url).splitlines()
    found = re.fullmatch(r"small's exports started at places \[([\d, ]+)\]", out[0])
    assert found, out
    places = [int(p) for p in found.group(1).split(",")]
    assert len(places) == 4 and max(places) < 12, places  # not after big's 40
    assert out[1:] == [
        "most at once per tenant: {'big': 2, 'small': 2}",
        "after the change, most at once: 4",
        "task:export concurrency 4 (declared 2)",
    ]


def test_results_returns_a_typed_output_and_a_failure(db_url: str) -> None:
    out = run_example("results.py", db_url).splitlines()
    assert out == [
        "thumbnail https://example.com/cat.thumb.png width 128",
        "failed after 1 attempt(s): PermanentFailure: refusing to fetch ftp://example.com/cat.png",
        "history: job bad failed",
        "history: job good success",
    ]
