"""OpenTelemetry spans: Enqueue (PRODUCER) and Run (CONSUMER), linked through the job."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pydantic import BaseModel

from zodworker import JobHelpers, TaskCatalog, ZodWorker, task

trace = pytest.importorskip("opentelemetry.trace")
sdk_trace = pytest.importorskip("opentelemetry.sdk.trace")
export = pytest.importorskip("opentelemetry.sdk.trace.export")
in_memory = pytest.importorskip("opentelemetry.sdk.trace.export.in_memory_span_exporter")

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def spans() -> Any:
    exporter = in_memory.InMemorySpanExporter()
    provider = sdk_trace.TracerProvider()
    provider.add_span_processor(export.SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return exporter


class Ping(BaseModel, extra="forbid"):  # extra="forbid": the trace key must never reach it
    n: int


async def test_enqueue_and_run_spans_are_linked(db_url: str, spans: Any) -> None:
    seen: list[Ping] = []
    done = asyncio.Event()

    async def handle_ping(payload: Ping, helpers: JobHelpers) -> None:
        seen.append(payload)
        done.set()

    class Catalog(TaskCatalog):
        ping = task(Ping, handler=handle_ping, queue_name="pings")

    spans.clear()
    async with ZodWorker(catalog=Catalog(), database_url=db_url, tracing=True) as client:
        job = await client.enqueue(Catalog.ping, Ping(n=7))
        await asyncio.wait_for(done.wait(), 30)
        await client.stop()

    assert seen == [Ping(n=7)]
    by_name = {span.name: span for span in spans.get_finished_spans()}
    producer, consumer = by_name["Enqueue ping"], by_name["Run ping"]
    assert producer.kind == trace.SpanKind.PRODUCER
    assert consumer.kind == trace.SpanKind.CONSUMER
    assert producer.attributes["job.id"] == job.id
    assert producer.attributes["job.queue_name"] == "pings"
    assert consumer.attributes["job.id"] == job.id
    assert consumer.attributes["job.attempts"] == 1
    [link] = consumer.links
    assert link.context.trace_id == producer.context.trace_id
    assert link.context.span_id == producer.context.span_id


async def test_a_failing_handler_marks_its_span(db_url: str, spans: Any) -> None:
    done = asyncio.Event()

    async def explode(payload: Ping, helpers: JobHelpers) -> None:
        done.set()
        raise ValueError("nope")

    class Catalog(TaskCatalog):
        boom = task(Ping, handler=explode, max_attempts=1)

    spans.clear()
    async with ZodWorker(catalog=Catalog(), database_url=db_url, tracing=True) as client:
        await client.enqueue("boom", {"n": 1})
        await asyncio.wait_for(done.wait(), 30)
        await client.stop()
    [run] = [span for span in spans.get_finished_spans() if span.name == "Run boom"]
    assert run.status.status_code == trace.StatusCode.ERROR
    assert any(event.name == "exception" for event in run.events)
