"""``zodworker run --metrics-port`` and ``--log-format json`` as an operator runs them: a
real worker process, scraped over HTTP, its log lines parsed as JSON."""

from __future__ import annotations

import json
import re
import signal
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.support.procapp import add_jobs
from tests.support.procs import Procs, poll_until
from tests.support.typedapp import prepare_typed_app
from zodworker import JobSpec


def _json_lines(output: str) -> list[dict[str, Any]]:
    lines = []
    for line in output.splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))  # every log line must be valid JSON
    return lines


def _successes(url: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=5).text
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "zodworker_jobs_total" and s.labels.get("outcome") == "success"
    )


def test_a_worker_serves_metrics_and_logs_json(db_url: str, tmp_path: Path, procs: Procs) -> None:
    prepare_typed_app(db_url, tmp_path)
    flags = ["--metrics-port", "0", "--metrics-host", "127.0.0.1", "--log-format", "json"]
    worker = procs.zodworker("-c", db_url, "--app", "typedapp:client", *flags, "run")
    serving = worker.wait_for("serving /metrics", within=60)
    found = re.search(r"http://127\.0\.0\.1:(\d+)", serving)
    assert found is not None, serving
    url = f"http://127.0.0.1:{found.group(1)}"
    worker.wait_for("running tasks", within=60)

    (job_id,) = add_jobs(db_url, [JobSpec(identifier="greet", payload={"n": 1})])
    poll_until(lambda: _successes(url) == 1, within=30, what="the success to be counted")
    ready = httpx.get(f"{url}/readyz", timeout=10)
    assert ready.status_code == 200, ready.text

    lines = poll_until(
        lambda: [r for r in _json_lines(worker.output()) if r.get("job_id") == job_id],
        within=30,
        what="the job's JSON log line",
    )
    (line,) = lines
    assert line["level"] == "INFO" and line["outcome"] == "success"
    assert (line["task"], line["attempt"]) == ("greet", 1)
    assert line["logger"] == "zodworker"

    worker.send(signal.SIGTERM)
    assert worker.wait_exit(30) == 0, worker.output()
    assert _json_lines(worker.output()), "the log lines were JSON"
