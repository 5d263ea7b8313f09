"""WorkerOptions are validated once, with errors naming the option; events API basics."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zodworker import ConfigError, Event, Events, WorkerOptions
from zodworker.worker.local_queue import next_batch


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
        ("local_queue_max_size", 100),  # without a local queue
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


def test_the_batch_cap_defaults_to_four_local_queues_and_is_checked_against_it() -> None:
    assert WorkerOptions(local_queue_size=500).batch_cap == 2000
    assert WorkerOptions(local_queue_size=500, local_queue_max_size=500).batch_cap == 500
    assert WorkerOptions().batch_cap == -1
    with pytest.raises(ConfigError) as info:
        WorkerOptions(local_queue_size=500, local_queue_max_size=499)
    assert info.value.field == "local_queue_max_size" and "from 500" in str(info.value)


sizes = st.integers(min_value=1, max_value=5_000)
paces = st.floats(min_value=0.0, max_value=1e6, allow_nan=False)


@given(
    sizes, sizes, st.integers(min_value=1, max_value=8), st.lists(st.tuples(paces, st.booleans()))
)
def test_a_batch_stays_within_its_bounds_and_follows_the_pace(
    base: int, extra: int, factor: int, fetches: list[tuple[float, bool]]
) -> None:
    cap = base * factor + extra % base  # any cap from base up
    batch = base
    for pace, full in fetches:
        after = next_batch(batch, base, cap, pace=pace, full=full)
        assert base <= after <= cap
        if not full:
            assert after == base  # a fetch that found fewer jobs than asked
        elif pace >= batch:
            assert after == min(cap, 2 * batch)
        elif 2 * pace < batch:
            assert after == max(base, batch // 2)
        else:
            assert after == batch
        # a faster pace never gives a smaller batch
        assert next_batch(batch, base, cap, pace=pace * 2 + 1, full=full) >= after
        batch = after


@given(sizes, st.integers(min_value=1, max_value=8))
def test_a_pace_that_keeps_up_reaches_the_cap_in_a_few_fetches(base: int, factor: int) -> None:
    cap, batch, fetches = base * factor, base, 0
    while batch < cap:
        batch, fetches = next_batch(batch, base, cap, pace=batch, full=True), fetches + 1
    assert batch == cap and fetches == (factor - 1).bit_length()


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
