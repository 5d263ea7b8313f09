"""The metrics recorder fed real events into a real prometheus-client registry, the queue
label cap (property-based), and the JSON log format."""

from __future__ import annotations

import io
import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from zodworker import Events, Job
from zodworker.observe.logs import JsonFormatter
from zodworker.observe.prom import PromBackend
from zodworker.observe.recorder import OTHER, MetricsRecorder, QueueLabels

LOG = logging.getLogger("zodworker.test.observe")


def job(n: int, task: str = "t", queue: str | None = None, **fields: Any) -> Job:
    now = datetime.now(UTC)
    return Job(
        id=n,
        task_identifier=task,
        queue_name=queue,
        payload={},
        priority=0,
        run_at=fields.pop("run_at", now),
        attempts=1,
        max_attempts=25,
        last_error=None,
        created_at=now,
        updated_at=now,
        key=None,
        locked_at=now,
        locked_by="p",
        revision=0,
        flags=None,
        task_id=1,
        job_queue_id=None,
        is_available=False,
        **fields,
    )


def recorder(limit: int = 100) -> tuple[MetricsRecorder, PromBackend, Events]:
    holder: list[MetricsRecorder] = []
    prom = PromBackend(lambda: holder[0].gauges())
    rec = MetricsRecorder([prom], queue_labels=QueueLabels(None, limit, LOG), listening=True)
    holder.append(rec)
    events = Events()
    rec.attach(events)
    return rec, prom, events


def samples(prom: PromBackend) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(prom.registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_events_become_counters_histograms_and_gauges() -> None:
    rec, prom, events = recorder()
    late = datetime.now(UTC) - timedelta(seconds=30)
    events.emit("job:start", "p", job=job(1, run_at=late))
    events.emit("job:complete", "p", job=job(1, queue="q"), duration=0.2, outcome="success")
    events.emit("job:complete", "p", job=job(2), duration=0.1, outcome="timeout")
    events.emit("pool:recovered", "p", job_ids=[5, 6, 7])
    events.emit("cron:scheduled", "p", ts=late, added=["digest", "digest", "report"])
    events.emit("pool:create", "p")
    events.emit("pool:listen:success", "p")
    events.emit("pool:leaseLost", "p", lease_id="p", reason="test")
    got = samples(prom)
    assert (
        got[("zodworker_jobs_total", (("outcome", "success"), ("queue", "q"), ("task", "t")))] == 1
    )
    assert (
        got[("zodworker_jobs_total", (("outcome", "timeout"), ("queue", ""), ("task", "t")))] == 1
    )
    assert got[("zodworker_job_duration_seconds_count", (("task", "t"),))] == 2
    assert got[("zodworker_job_duration_seconds_sum", (("task", "t"),))] > 0.29
    assert got[("zodworker_job_queue_latency_seconds_sum", (("task", "t"),))] >= 30
    assert got[("zodworker_jobs_recovered_total", ())] == 3
    assert got[("zodworker_cron_jobs_total", (("task", "digest"),))] == 2
    assert got[("zodworker_cron_jobs_total", (("task", "report"),))] == 1
    assert got[("zodworker_lease_lost_total", ())] == 1
    assert got[("zodworker_lease_held", ())] == 0
    assert got[("zodworker_listen_connected", ())] == 1

    rec.detach()
    events.emit("job:complete", "p", job=job(3), duration=0.1, outcome="success")
    assert samples(prom)[("zodworker_job_duration_seconds_count", (("task", "t"),))] == 2
    prom.close()
    assert generate_latest(prom.registry) == b""


@given(
    names=st.lists(st.text(min_size=1, max_size=8), max_size=60),
    limit=st.integers(min_value=1, max_value=20),
)
def test_queue_labels_never_exceed_the_cap_and_are_stable(names: list[str], limit: int) -> None:
    labels = QueueLabels(None, limit, LOG)
    first = [labels(name) for name in names]
    again = [labels(name) for name in names]
    assert first == again  # a queue keeps its label
    distinct = set(first) | {""}
    assert len(distinct - {OTHER}) <= limit
    for name, value in zip(names, first, strict=True):
        assert value in (name, OTHER)


def test_queue_label_groups_names_before_the_cap_counts() -> None:
    labels = QueueLabels(lambda q: q.split(":")[0], 3, LOG)
    assert [labels(f"run:{n}") for n in range(1000)] == ["run"] * 1000
    assert labels(None) == ""
    assert labels("emails") == "emails"
    assert labels("sms") == OTHER  # "", "run", "emails" already


def test_json_log_lines_carry_the_fields_and_the_traceback() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("zodworker.test.json")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning(
            "job %d failed", 7, extra={"job_id": 7, "task": "t", "when": datetime.now(UTC)}
        )
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("with traceback")
    finally:
        logger.removeHandler(handler)
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["message"] == "job 7 failed"
    assert (first["level"], first["logger"], first["job_id"], first["task"]) == (
        "WARNING",
        "zodworker.test.json",
        7,
        "t",
    )
    assert isinstance(first["when"], str) and first["ts"].endswith("+00:00")
    assert "exc" not in first
    assert second["exc"].startswith("Traceback") and "ValueError: boom" in second["exc"]
