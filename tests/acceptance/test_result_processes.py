"""Typed results across processes: this process enqueues and waits, a worker process runs the
jobs, a third process waits by job id; retries, a permanent failure, and a worker killed in
the middle of a job whose result is awaited."""

from __future__ import annotations

import json
import signal
import textwrap
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.support.procapp import scalar, sql
from tests.support.procs import Procs, poll_until

APP = textwrap.dedent(
    """
    import asyncio
    import json
    import os
    import sys

    from pydantic import BaseModel

    from zodworker import JobFailed, PermanentFailure, TaskCatalog, ZodWorker, task


    class Resize(BaseModel):
        url: str
        fail_times: int = 0
        hang: bool = False


    class Resized(BaseModel):
        url: str
        width: int


    async def resize(payload: Resize, helpers) -> Resized:
        print(f"running {helpers.job.id} attempt {helpers.job.attempts}", flush=True)
        if payload.hang and helpers.job.attempts == 1:
            await asyncio.sleep(3600)
        if helpers.job.attempts <= payload.fail_times:
            raise RuntimeError(f"flaky on attempt {helpers.job.attempts}")
        return Resized(url=payload.url, width=len(payload.url))


    async def refuse(payload: Resize, helpers) -> Resized:
        raise PermanentFailure(f"cannot read {payload.url}")


    class Media(TaskCatalog):
        resize = task(Resize, resize, output=Resized, max_attempts=5)
        refuse = task(Resize, refuse, output=Resized)


    def client(**options) -> ZodWorker:
        return ZodWorker(
            catalog=Media(), database_url=os.environ["APP_DB"], poll_interval=0.2,
            heartbeat_interval=0.3, recovery_timeout=1.5, **options,
        )


    async def wait(job_id: int) -> None:
        async with client(producer_only=True) as producer:
            try:
                resized = await producer.result(job_id, timeout=60)
            except JobFailed as failed:
                print(json.dumps({"failed": failed.last_error, "attempts": failed.attempts}))
            else:
                print(json.dumps({"type": type(resized).__name__, **resized.model_dump()}))


    if __name__ == "__main__":
        if sys.argv[1] == "worker":
            asyncio.run(client(concurrency=2).run_until_stopped())
        else:
            asyncio.run(wait(int(sys.argv[2])))
    """
)


@contextmanager
def _hurried(url: str) -> Iterator[None]:
    """Make retries due at once while inside (the backoff would take seconds)."""
    stop = threading.Event()

    def hurry() -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            while not stop.wait(0.05):
                conn.execute(
                    "update graphile_worker._private_jobs set run_at = now()"
                    " where attempts > 0 and locked_at is null and run_at > now()"
                )

    thread = threading.Thread(target=hurry, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(5)


def _load_app(tmp_path: Path) -> Any:
    (tmp_path / "resultapp.py").write_text(APP)
    import importlib.util

    spec = importlib.util.spec_from_file_location("resultapp", tmp_path / "resultapp.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_results_cross_processes_with_retries_and_a_permanent_failure(
    db_url: str, tmp_path: Path, procs: Procs, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("APP_DB", db_url)
    app = _load_app(tmp_path)
    producer = app.client(producer_only=True)  # enqueue_sync needs no initialize()
    with psycopg.connect(db_url, autocommit=True) as conn:
        plain = producer.enqueue_sync(app.Media.resize, app.Resize(url="s3://a"), tx=conn)
        flaky = producer.enqueue_sync(
            app.Media.resize, app.Resize(url="s3://flaky", fail_times=2), tx=conn
        )
        refused = producer.enqueue_sync(app.Media.refuse, app.Resize(url="s3://no"), tx=conn)
    worker = procs.python("resultapp.py", "worker", env={"APP_DB": db_url})
    with _hurried(db_url):
        resized = plain.result_sync(timeout=60)
        assert resized == app.Resized(url="s3://a", width=len("s3://a"))
        assert type(resized).__name__ == "Resized"
        assert flaky.result_sync(timeout=60).width == len("s3://flaky")
        with pytest.raises(Exception, match="cannot read s3://no") as failed:
            refused.result_sync(timeout=60)
    assert type(failed.value).__name__ == "JobFailed"
    assert failed.value.attempts == 1
    history = sql(
        db_url,
        "select job_id, outcome, attempts from graphile_worker._zodworker_job_history"
        " order by job_id",
    )
    assert history == [
        (plain.id, "success", 1),
        (flaky.id, "success", 3),
        (refused.id, "failed", 1),
    ]
    # a third process waits by job id alone
    for job_id, expected in [
        (flaky.id, {"type": "Resized", "url": "s3://flaky", "width": 10}),
        (refused.id, {"failed": None, "attempts": 1}),
    ]:
        waiter = procs.python("resultapp.py", "wait", str(job_id), env={"APP_DB": db_url})
        assert waiter.wait_exit(60) == 0, waiter.output()
        answer = json.loads(waiter.output().strip().splitlines()[-1])
        if "failed" in expected:
            assert "cannot read s3://no" in answer["failed"]
            answer["failed"] = None
        assert answer == expected
    worker.send(signal.SIGTERM)
    assert worker.wait_exit(30) == 0, worker.output()


def test_an_awaited_job_survives_its_worker_being_killed(
    db_url: str, tmp_path: Path, procs: Procs, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("APP_DB", db_url)
    app = _load_app(tmp_path)
    producer = app.client(producer_only=True)
    with psycopg.connect(db_url, autocommit=True) as conn:
        hung = producer.enqueue_sync(app.Media.resize, app.Resize(url="s3://h", hang=True), tx=conn)
    first = procs.python("resultapp.py", "worker", env={"APP_DB": db_url})
    first.wait_for(f"running {hung.id} attempt 1", within=60)
    first.kill()  # SIGKILL in the middle of the job: no outcome written
    second = procs.python("resultapp.py", "worker", env={"APP_DB": db_url})
    with _hurried(db_url):
        assert hung.result_sync(timeout=60) == app.Resized(url="s3://h", width=len("s3://h"))
    second.wait_for(f"running {hung.id} attempt 2", within=10)
    poll_until(
        lambda: scalar(db_url, "select count(*) from graphile_worker.jobs") == 0,
        within=10,
        what="the job gone",
    )
    history = sql(db_url, "select outcome, attempts from graphile_worker._zodworker_job_history")
    assert history == [("success", 2)]  # ran to completion once, on its second attempt
    second.send(signal.SIGTERM)
    assert second.wait_exit(30) == 0, second.output()
