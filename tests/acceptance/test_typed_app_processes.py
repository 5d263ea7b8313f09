"""A typed application as the worker process: ``zodworker run --app module:client`` (or
``module:catalog``) and ``asyncio.run(client.run_until_stopped())`` run the catalog's
handlers with payload validation, and stop cleanly on SIGTERM and SIGINT."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.support.procapp import add_jobs, scalar, sql
from tests.support.procs import Proc, Procs, poll_until
from tests.support.typedapp import prepare_typed_app
from zodworker import JobSpec


def _runs(url: str) -> list[tuple[int, bool]]:
    return [(int(n), bool(f)) for n, f in sql(url, "select n, finished from typed_runs order by n")]


def _check_validated_and_stopped(url: str, worker: Proc, sig: signal.Signals) -> None:
    """Two good jobs ran (with the model), a bad payload failed permanently naming the field;
    then ``sig`` stops the process: the slow job finishes, the exit is clean, no pool row."""
    bad, *_ = add_jobs(url, [JobSpec(identifier="greet", payload={"n": "not a number"})])
    add_jobs(url, [JobSpec(identifier="greet", payload={"n": n}) for n in (1, 2)])
    poll_until(lambda: _runs(url) == [(1, True), (2, True)], within=30, what="the good jobs")
    failed = poll_until(
        lambda: sql(
            url,
            "select attempts, max_attempts, last_error from graphile_worker._private_jobs"
            " where id = %s and last_error is not null",
            (bad,),
        ),
        within=30,
        what="the bad payload to fail",
    )
    ((attempts, max_attempts, last_error),) = failed
    assert attempts == max_attempts, "a payload that cannot validate is not retried"
    assert "payload.n" in last_error, last_error

    add_jobs(url, [JobSpec(identifier="greet", payload={"n": 3, "slow": 1.0})])
    poll_until(lambda: len(_runs(url)) == 3, within=30, what="the slow job to start")
    worker.send(sig)
    assert worker.wait_exit(30) == 0, worker.output()
    assert _runs(url)[-1] == (3, True), "the running job finished before the exit"
    assert scalar(url, "select count(*) from graphile_worker._zodworker_pools") == 0


@pytest.mark.parametrize(
    ("target", "sig"),
    [("typedapp:client", signal.SIGTERM), ("typedapp:catalog", signal.SIGINT)],
    ids=["client-SIGTERM", "catalog-SIGINT"],
)
def test_zodworker_run_app_runs_a_typed_catalog(
    db_url: str, tmp_path: Path, procs: Procs, target: str, sig: signal.Signals
) -> None:
    prepare_typed_app(db_url, tmp_path)
    worker = procs.zodworker("-c", db_url, "--app", target, "--poll-interval", "200", "run")
    worker.wait_for("running tasks", within=60)
    _check_validated_and_stopped(db_url, worker, sig)
    assert "worker stopped" in worker.output()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_run_until_stopped_is_a_worker_process(
    db_url: str, tmp_path: Path, procs: Procs, sig: signal.Signals
) -> None:
    prepare_typed_app(db_url, tmp_path)
    worker = procs.python("typedapp.py", env={"APP_DB": db_url})
    poll_until(
        lambda: scalar(db_url, "select count(*) from graphile_worker._zodworker_pools") == 1,
        within=60,
        what="the client's worker pool to register",
    )
    _check_validated_and_stopped(db_url, worker, sig)
