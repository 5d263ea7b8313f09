"""Optional OpenTelemetry spans (``pip install 'zodworker[otel]'``; ``ZodWorker(tracing=True)``).

Enqueueing opens a PRODUCER span ``Enqueue <task>``; running opens a CONSUMER span
``Run <task>`` linked to the producer's span, with ``job.*`` attributes. The jobs table has no
metadata column, so the producer's trace context travels inside object payloads under the
reserved key ``_trace`` (W3C ``traceparent``/``tracestate``), removed again before the payload
is validated and handed to the handler. Payloads that are not JSON objects are not linked.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .errors import ConfigError
from .job import Job, JobSpec

__all__ = ["TRACE_KEY", "Tracing", "strip_trace"]

TRACE_KEY = "_trace"


class Tracing:
    """Creates zodworker's spans with the globally configured tracer provider."""

    def __init__(self) -> None:
        try:
            from opentelemetry import propagate, trace
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ConfigError(
                "tracing", "needs OpenTelemetry: pip install 'zodworker[otel]'"
            ) from exc
        self._trace = trace
        self._propagate = propagate
        self._tracer = trace.get_tracer("zodworker")

    @contextmanager
    def enqueue(self, spec: JobSpec) -> Iterator[Any]:
        """Around adding ``spec``: the PRODUCER span; puts the trace context in the payload."""
        attributes = {
            "job.task_identifier": spec.identifier,
            "job.queue_name": spec.queue_name or "",
            "job.key": spec.job_key or "",
        }
        with self._tracer.start_as_current_span(
            f"Enqueue {spec.identifier}",
            kind=self._trace.SpanKind.PRODUCER,
            attributes=attributes,
        ) as span:
            if isinstance(spec.payload, dict):
                carrier: dict[str, str] = {}
                self._propagate.inject(carrier)
                spec.payload = {**spec.payload, TRACE_KEY: carrier}
            yield span

    @staticmethod
    def record_job(span: Any, job: Job) -> None:
        """Add the added job's id and run time to the PRODUCER span."""
        span.set_attribute("job.id", job.id)
        span.set_attribute("job.run_at", job.run_at.isoformat())

    @contextmanager
    def run(self, job: Job, payload: Any) -> Iterator[Any]:
        """Around running ``job``: the CONSUMER span, linked to its producer when known.
        Exceptions are recorded on the span and set its status."""
        links = []
        carrier = payload.get(TRACE_KEY) if isinstance(payload, dict) else None
        if isinstance(carrier, dict):
            context = self._propagate.extract(carrier)
            producer = self._trace.get_current_span(context).get_span_context()
            if producer.is_valid:
                links.append(self._trace.Link(producer))
        with self._tracer.start_as_current_span(
            f"Run {job.task_identifier}",
            kind=self._trace.SpanKind.CONSUMER,
            links=links,
            attributes={
                "job.id": job.id,
                "job.task_identifier": job.task_identifier,
                "job.queue_name": job.queue_name or "",
                "job.attempts": job.attempts,
                "job.max_attempts": job.max_attempts,
            },
        ) as span:
            yield span


def strip_trace(payload: Any) -> Any:
    """``payload`` without the reserved trace key (the stored payload is left as it is)."""
    if isinstance(payload, dict) and TRACE_KEY in payload:
        return {k: v for k, v in payload.items() if k != TRACE_KEY}
    return payload
