"""Metrics and health of a running client, scraped over real HTTP (httpx) and parsed with
prometheus-client's own parser; the OpenTelemetry mirror read with the SDK's in-memory
reader; readiness that fails when the database is cut off, liveness when the loop blocks."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from pydantic import BaseModel

from tests.support.proxy import TcpProxy
from zodworker import Limit, MetricsOptions, PermanentFailure, TaskCatalog, ZodWorker, task
from zodworker.observe import INSTRUMENTS

pytestmark = pytest.mark.anyio
promtool = shutil.which("promtool")


class Item(BaseModel):
    n: int
    fail: bool = False


async def handle(payload: Item, helpers: Any) -> None:
    if payload.fail:
        raise PermanentFailure(f"item {payload.n} is broken")


class Shop(TaskCatalog):
    process = task(Item, handler=handle, queue_name=lambda p: f"shard:{p.n % 3}")
    other = task(Item, handler=handle)
    unserved = task(Item, queue_name=lambda p: f"bulk:{p.n}")  # no handler here: jobs wait
    limited = task(Item, limits=[Limit("tenant", concurrency=1, key=lambda p: str(p.n % 2))])


def client_for(url: str, **metrics: Any) -> ZodWorker:
    options = MetricsOptions(
        port=0, host="127.0.0.1", interval=0.1, queue_label=lambda q: q.split(":")[0], **metrics
    )
    return ZodWorker(
        catalog=Shop(),
        database_url=url,
        migrate=False,
        metrics=options,
        concurrency=4,
        poll_interval=0.05,
        handle_signals=False,
    )


def base_url(client: ZodWorker) -> str:
    assert client.observer is not None and client.observer.port is not None
    return f"http://127.0.0.1:{client.observer.port}"


def scrape(url: str) -> dict[str, list[Sample]]:
    """Every sample of /metrics, by metric family name."""
    response = httpx.get(f"{url}/metrics", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {f.name: f.samples for f in text_string_to_metric_families(response.text)}


def value(samples: dict[str, list[Sample]], sample: str, **labels: str) -> float:
    family = sample.removesuffix("_total").removesuffix("_count").removesuffix("_bucket")
    family = family.removesuffix("_sum")
    found = [
        s.value
        for s in samples.get(family, [])
        if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items())
    ]
    return sum(found)


async def poll_scrape(url: str, done: Any, what: str) -> dict[str, list[Sample]]:
    deadline = time.monotonic() + 20
    while True:
        samples = await anyio.to_thread.run_sync(scrape, url)
        if done(samples):
            return samples
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}: {samples}")
        await anyio.sleep(0.05)


async def test_metrics_count_the_work_done(db_url: str) -> None:
    async with client_for(db_url) as client:
        url = base_url(client)
        await client.enqueue_many([("process", Item(n=n)) for n in range(100)])
        for n in range(3):
            await client.enqueue("other", Item(n=n, fail=True), max_attempts=5)

        def finished(s: dict[str, list[Sample]]) -> bool:
            return (
                value(s, "zodworker_jobs_total") >= 103
                and value(s, "zodworker_queued_jobs", state="failed") == 3
                and value(s, "zodworker_queued_jobs", state="ready") == 0
                and value(s, "zodworker_queued_jobs", state="running") == 0
            )

        samples = await poll_scrape(url, finished, "103 finished jobs and the state gauge")
        job_ids = {str(view) for view in range(1, 200)}
        exposition = (await anyio.to_thread.run_sync(lambda: httpx.get(f"{url}/metrics"))).text

    total = value(samples, "zodworker_jobs_total")
    assert total == 103
    assert value(samples, "zodworker_jobs_total", outcome="success") == 100
    assert value(samples, "zodworker_jobs_total", outcome="failed", task="other") == 3
    assert value(samples, "zodworker_jobs_total", task="process", queue="shard") == 100
    assert value(samples, "zodworker_jobs_total", task="other", queue="") == 3
    assert value(samples, "zodworker_job_duration_seconds_count", task="process") == 100
    assert value(samples, "zodworker_job_queue_latency_seconds_count") == 103
    assert value(samples, "zodworker_queued_jobs", task="other", state="failed") == 3
    assert value(samples, "zodworker_queued_jobs", state="ready") == 0
    assert value(samples, "zodworker_queued_jobs_exact") == 1
    busy, free = (value(samples, "zodworker_slots", state=s) for s in ("busy", "free"))
    assert busy + free == 4
    assert value(samples, "zodworker_listen_connected") == 1
    assert value(samples, "zodworker_lease_held") == 1
    # labels are the documented ones, never a job id
    allowed = {i.name: set(i.labels) for i in INSTRUMENTS}
    for family, family_samples in samples.items():
        if family.startswith("zodworker_"):
            for sample in family_samples:
                base = family.removesuffix("_created")  # prometheus-client's creation times
                assert set(sample.labels) - {"le"} <= allowed[base], sample
                assert not job_ids & set(sample.labels.values()), sample
    if promtool is not None:  # Prometheus' own linter: names, units, help texts
        lint = await anyio.run_process(
            [promtool, "check", "metrics"], input=exposition.encode(), check=False
        )
        assert lint.returncode == 0, lint.stdout.decode() + lint.stderr.decode()


async def test_the_state_gauges_show_waiting_jobs_and_the_oldest_wait(db_url: str) -> None:
    async with client_for(db_url) as client:
        url = base_url(client)
        for n in range(5):
            await client.enqueue("unserved", Item(n=n))

        def counted(s: dict[str, list[Sample]]) -> bool:
            return value(s, "zodworker_queued_jobs", task="unserved", state="ready") == 5 and (
                value(s, "zodworker_oldest_ready_job_age_seconds", queue="bulk") > 0.2
            )

        samples = await poll_scrape(url, counted, "five ready jobs waiting a while")
    assert value(samples, "zodworker_state_query_seconds") > 0


async def test_the_limit_gauges_show_jobs_waiting_under_each_limit(db_url: str) -> None:
    async with client_for(db_url) as client:
        url = base_url(client)
        await client.enqueue_many([("limited", Item(n=n)) for n in range(7)])

        def counted(s: dict[str, list[Sample]]) -> bool:
            return value(s, "zodworker_limit_jobs", limit="tenant", state="waiting") == 7

        samples = await poll_scrape(url, counted, "seven jobs waiting under the limit")
    assert value(samples, "zodworker_limit_jobs", limit="tenant", state="running") == 0


async def test_healthz_and_readyz_answer_and_readyz_fails_when_the_database_is_cut(
    db_url: str,
) -> None:
    proxy = TcpProxy(db_url)
    try:
        async with client_for(proxy.url(db_url)) as client:
            url = base_url(client)
            health = await anyio.to_thread.run_sync(lambda: httpx.get(f"{url}/healthz"))
            assert (health.status_code, health.json()) == (200, {"alive": True})
            ready = await anyio.to_thread.run_sync(lambda: httpx.get(f"{url}/readyz"))
            assert ready.status_code == 200, ready.text
            checks = ready.json()["checks"]
            assert checks == {"database": "ok", "pool": "ok", "lease": "ok", "listen": "ok"}

            proxy.cut()
            ready = await anyio.to_thread.run_sync(lambda: httpx.get(f"{url}/readyz", timeout=15))
            assert ready.status_code == 503
            assert ready.json()["checks"]["database"] != "ok"
            assert (
                await anyio.to_thread.run_sync(lambda: httpx.get(f"{url}/healthz"))
            ).status_code == 200
            proxy.heal()
            await client.stop(timeout=10)
    finally:
        proxy.close()


async def test_healthz_fails_while_the_event_loop_is_blocked(db_url: str) -> None:
    async with client_for(db_url) as client:
        url = base_url(client)
        answers: list[httpx.Response] = []
        asked = threading.Event()

        def ask() -> None:
            asked.set()
            answers.append(httpx.get(f"{url}/healthz", timeout=15))

        thread = threading.Thread(target=ask)
        thread.start()
        asked.wait(5)
        time.sleep(6)  # noqa: ASYNC251 (the fault under test: something hogging the loop)
        thread.join(15)
    (answer,) = answers
    assert answer.status_code == 503
    assert "event loop" in answer.json()["reason"]


async def test_the_opentelemetry_mirror_carries_the_same_numbers(db_url: str) -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    async with client_for(db_url, otel=True, meter_provider=provider) as client:
        url = base_url(client)
        await client.enqueue_many([("process", Item(n=n)) for n in range(10)])
        await client.enqueue("other", Item(n=1, fail=True))
        await poll_scrape(url, lambda s: value(s, "zodworker_jobs_total") == 11, "11 jobs")
        points = dict(_otel_points(reader))
    assert points[("zodworker.jobs.finished", "success")] == 10
    assert points[("zodworker.jobs.finished", "failed")] == 1
    assert points[("zodworker.job.duration", "")] == 11
    assert ("zodworker.slots", "busy") in points


def _otel_points(reader: InMemoryMetricReader) -> Iterator[tuple[tuple[str, str], float]]:
    data = reader.get_metrics_data()
    assert data is not None
    totals: dict[tuple[str, str], float] = {}
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    attrs = dict(point.attributes or {})
                    key = (metric.name, str(attrs.get("outcome", attrs.get("state", ""))))
                    amount = getattr(point, "value", None)
                    if amount is None:
                        amount = point.count  # a histogram: how many observations
                    totals[key] = totals.get(key, 0) + amount
    yield from totals.items()
