"""WorkerOptions are validated once, with errors naming the option; events API basics."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zodworker import ConfigError, Event, Events, WorkerOptions


def test_defaults_are_graphile_workers() -> None:
    options = WorkerOptions()
    assert (options.concurrency, options.poll_interval, options.max_pool_size) == (1, 2.0, 10)
    assert (options.max_contiguous_errors, options.local_queue_size) == (10, -1)
    assert options.schema == "graphile_worker"
    assert options.pool_id != WorkerOptions().pool_id  # one id per pool


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("concurrency", 0),
        ("concurrency", 1.5),
        ("concurrency", True),
        ("max_pool_size", 0),
        ("poll_interval", 0),
        ("poll_interval", "2s"),
        ("local_queue_size", 0),
        ("local_queue_ttl", -1),
        ("local_queue_fetch_ahead", True),
        ("local_queue_fetch_ahead", "on"),
        ("complete_job_batch_delay", -2),
        ("graceful_shutdown_abort_timeout", float("nan")),
        ("schema", ""),
        ("forbidden_flags", "slow"),
        ("forbidden_flags", ["ok", 1]),
        ("pool_id", ""),
    ],
)
def test_bad_options_name_the_field(field: str, value: Any) -> None:
    with pytest.raises(ConfigError) as info:
        WorkerOptions(**{field: value})
    assert info.value.field == field


@given(st.floats(min_value=0.01, max_value=100), st.floats(min_value=0.0, max_value=1000))
def test_recovery_timeout_must_cover_three_heartbeats(heartbeat: float, recovery: float) -> None:
    if recovery >= 3 * heartbeat and recovery >= 0.03:
        assert WorkerOptions(heartbeat_interval=heartbeat, recovery_timeout=recovery)
    else:
        with pytest.raises(ConfigError) as info:
            WorkerOptions(heartbeat_interval=heartbeat, recovery_timeout=recovery)
        assert info.value.field == "recovery_timeout"


def test_events_subscribe_unsubscribe_and_isolate_failures() -> None:
    events = Events()
    seen: list[Event] = []
    with pytest.raises(ValueError, match="unknown event name"):
        events.on("job:sucess", seen.append)
    off = events.on("job:success", seen.append)
    events.on("*", lambda e: 1 / 0)  # a failing listener never reaches the worker
    assert events.wants("job:success")
    events.emit("job:success", "pool-1", duration=0.5)
    events.emit("job:error", "pool-1")
    off()
    events.emit("job:success", "pool-1")
    assert [(e.name, e.pool_id, e.duration) for e in seen] == [("job:success", "pool-1", 0.5)]
