"""The metrics zodworker exports: one table that the Prometheus and OpenTelemetry backends,
the docs and the Grafana dashboard's test all read.

Label sets are bounded: ``task`` (the task identifiers a deployment has), ``queue`` (named
queues, mapped through ``MetricsOptions.queue_label`` and capped at ``max_queues`` distinct
values, the rest counted as ``_other``), ``outcome`` (five values), ``state`` (five values).
No label ever carries a job id or a payload value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

__all__ = ["BUCKETS", "INSTRUMENTS", "Instrument", "by_name"]

BUCKETS: Final = (
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
    300.0, 600.0, 1800.0, 3600.0,
)  # fmt: skip
"""Seconds: jobs and waits from a millisecond to an hour."""


@dataclass(frozen=True, slots=True)
class Instrument:
    """One metric. ``name`` is the Prometheus name (a counter's samples add ``_total``);
    ``otel`` the OpenTelemetry instrument name."""

    name: str
    kind: Literal["counter", "histogram", "gauge"]
    help: str
    labels: tuple[str, ...] = ()
    otel: str = ""
    unit: str = ""


INSTRUMENTS: Final = (
    Instrument(
        "zodworker_jobs",
        "counter",
        "Jobs run by this process, by task, named queue and outcome (success, retry, "
        "failed: for good, timeout, cancelled).",
        ("task", "queue", "outcome"),
        "zodworker.jobs.finished",
        "{job}",
    ),
    Instrument(
        "zodworker_job_duration_seconds",
        "histogram",
        "How long handlers ran, by task.",
        ("task",),
        "zodworker.job.duration",
        "s",
    ),
    Instrument(
        "zodworker_job_queue_latency_seconds",
        "histogram",
        "From when a job was due (run_at) until it started, by task.",
        ("task",),
        "zodworker.job.queue_latency",
        "s",
    ),
    Instrument(
        "zodworker_jobs_recovered",
        "counter",
        "Jobs of dead zodworker pools that this process's pool released so they run again.",
        (),
        "zodworker.jobs.recovered",
        "{job}",
    ),
    Instrument(
        "zodworker_cron_jobs",
        "counter",
        "Jobs added by this process's cron scheduler, by task.",
        ("task",),
        "zodworker.cron.jobs",
        "{job}",
    ),
    Instrument(
        "zodworker_lease_lost",
        "counter",
        "Times this process's pool lost its lease (its running jobs were aborted and given back).",
        (),
        "zodworker.lease.lost",
        "{event}",
    ),
    Instrument(
        "zodworker_queued_jobs",
        "gauge",
        "Jobs in the table by task and state (ready, scheduled, running, retrying, failed); "
        "exact up to a bound, estimated above it (see zodworker_queued_jobs_exact).",
        ("task", "state"),
        "zodworker.queued_jobs",
        "{job}",
    ),
    Instrument(
        "zodworker_queued_jobs_exact",
        "gauge",
        "1 when zodworker_queued_jobs are exact counts, 0 when estimated from a sample.",
        (),
        "zodworker.queued_jobs.exact",
    ),
    Instrument(
        "zodworker_oldest_ready_job_age_seconds",
        "gauge",
        'How long the oldest job that is ready to run has waited, per named queue (queue="": '
        "jobs without one), for the queues that waited longest.",
        ("queue",),
        "zodworker.oldest_ready_job.age",
        "s",
    ),
    Instrument(
        "zodworker_limit_jobs",
        "gauge",
        "Jobs under each concurrency/rate limit by state (running: holding a slot; waiting: "
        "not running, for room, their run_at or a retry); waiting is exact up to a bound.",
        ("limit", "state"),
        "zodworker.limit.jobs",
        "{job}",
    ),
    Instrument(
        "zodworker_state_query_seconds",
        "gauge",
        "How long the last query behind zodworker_queued_jobs took.",
        (),
        "zodworker.state_query.duration",
        "s",
    ),
    Instrument(
        "zodworker_slots",
        "gauge",
        "This process's job slots by state (busy: running a job, free).",
        ("state",),
        "zodworker.slots",
        "{slot}",
    ),
    Instrument(
        "zodworker_listen_connected",
        "gauge",
        "1 while the LISTEN connection for new-job notifications is up (absent when polling only).",
        (),
        "zodworker.listen.connected",
    ),
    Instrument(
        "zodworker_lease_held",
        "gauge",
        "1 while this process's pool holds a current lease.",
        (),
        "zodworker.lease.held",
    ),
)


def by_name() -> dict[str, Instrument]:
    """The instruments by Prometheus name."""
    return {instrument.name: instrument for instrument in INSTRUMENTS}
