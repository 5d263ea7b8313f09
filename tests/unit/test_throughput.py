"""The dashboard's throughput meter: increases are counted once, within the minute."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from zodworker.admin import Deleted, WorkerInfo
from zodworker.web.throughput import WINDOW, Meter

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def pool(pool_id: str, completed: int, failed: int = 0, started: datetime = T0) -> WorkerInfo:
    return WorkerInfo(pool_id, "h", 1, started, T0, T0, 0, completed, failed)


def gone(total: int, at: datetime = T0 + timedelta(hours=1)) -> Deleted:
    return Deleted(total, at)


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


# Each step: time passes, then per pool an increase (or the pool is absent: None)
steps = st.lists(
    st.tuples(
        st.floats(0.1, 5.0),
        st.lists(st.one_of(st.none(), st.integers(0, 50)), min_size=3, max_size=3),
        st.integers(0, 100),
    ),
    min_size=1,
    max_size=40,
)


@given(steps=steps)
def test_the_rate_counts_each_increase_once_and_only_within_the_window(steps: list) -> None:
    clock = Clock()
    meter = Meter(clock)
    totals = [0, 0, 0]
    present = [True, True, True]
    deleted = 0
    meter.add([pool(f"p{i}", 0) for i in range(3)], gone(deleted))
    history: list[tuple[float, float, int, int]] = []  # (from, to, completed, deleted)
    for wait, increases, removed in steps:
        start = clock.t
        clock.t += wait
        counted = 0
        for i, increase in enumerate(increases):
            if increase is None:  # the pool is not seen in this sample
                present[i] = False
                continue
            totals[i] += increase
            if present[i]:  # a pool seen again after an absence only sets a new baseline
                counted += increase
            present[i] = True
        deleted += removed
        workers = [pool(f"p{i}", totals[i]) for i in range(3) if increases[i] is not None]
        meter.add(workers, gone(deleted))
        history.append((start, clock.t, counted, removed))
    kept = [h for h in history if clock.t - h[0] <= WINDOW]
    rates = meter.rates()
    if not kept:
        assert rates.completed is None
        return
    span = kept[-1][1] - kept[0][0]
    assert rates.span == span
    assert rates.completed is not None and rates.deleted is not None
    assert abs(rates.completed - sum(h[2] for h in kept) * 60 / span) < 1e-6
    assert abs(rates.deleted - sum(h[3] for h in kept) * 60 / span) < 1e-6


def test_nothing_is_known_before_two_samples_and_a_new_pool_only_sets_a_baseline() -> None:
    clock = Clock()
    meter = Meter(clock)
    assert meter.rates().completed is None and meter.due()
    meter.add([pool("a", 500)], gone(1000, T0 + timedelta(seconds=10)))
    assert meter.rates().completed is None and not meter.due()
    clock.t += 2
    assert meter.due()
    # b started before the previous sample: its 9000 are not new work; c started after it
    b, c = pool("b", 9000), pool("c", 4, started=T0 + timedelta(seconds=11))
    meter.add([pool("a", 510), b, c], gone(1030, T0 + timedelta(seconds=12)))
    rates = meter.rates()
    assert (rates.completed, rates.deleted, rates.span) == (420.0, 900.0, 2.0)
    assert meter.rates(pools_known=False).completed is None
