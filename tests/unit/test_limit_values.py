"""Limits as values: validation that names the field, keys computed from payloads, the
command line's rate syntax, and when the worker looks for limited jobs (LimitedFetch)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zodworker import LIMITED_FLAG, JobSpecError, Limit, Rate, TaskCatalog, task
from zodworker.catalog import build_spec
from zodworker.cli.admin_parser import _rate
from zodworker.limits import MAX_LIMITS_PER_JOB, check_limits
from zodworker.worker.limited import LimitedFetch


@pytest.mark.parametrize(
    ("make", "field", "hint"),
    [
        (lambda: Rate(0), "rate.count", ">= 1"),
        (lambda: Rate(5, per=0), "rate.per", "> 0"),
        (lambda: Rate(5, per=float("nan")), "rate.per", "> 0"),
        (lambda: Limit(""), "limit.name", "must not be empty"),
        (lambda: Limit("x", concurrency=-1), "limit.concurrency", ">= 0"),
        (lambda: Limit("x", concurrency=True), "limit.concurrency", "whole number"),
        (lambda: Limit("x", key=3), "limit.key", "callable"),  # type: ignore[arg-type]
        (lambda: Limit("x", rate=(20, 1)), "limit.rate", "Rate(count"),  # type: ignore[arg-type]
        (lambda: check_limits([Limit("a"), Limit("a")]), "limits[1].name", "appears twice"),
        (
            lambda: check_limits([Limit(f"l{i}") for i in range(MAX_LIMITS_PER_JOB + 1)]),
            "limits",
            "at most",
        ),
    ],
)
def test_a_bad_limit_is_refused_naming_the_field(make: Any, field: str, hint: str) -> None:
    with pytest.raises(JobSpecError) as raised:
        make()
    assert raised.value.field == field and hint in str(raised.value)


@given(st.integers(1, 10_000), st.floats(0.001, 86_400, allow_nan=False))
def test_the_command_lines_rate_reads_back_what_it_shows(count: int, per: float) -> None:
    assert _rate(f"{count}/{per!r}") == Rate(count, per)
    assert _rate(str(count)) == Rate(count, 1.0)


@pytest.mark.parametrize("text", ["fast", "0/1", "3/-1", "/1", "2/x"])
def test_a_bad_rate_on_the_command_line_says_the_syntax(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="COUNT/SECONDS"):
        _rate(text)


@given(st.text(max_size=40))
def test_a_keyed_limit_binds_the_payloads_key_as_text(tenant: str) -> None:
    limit = Limit("tenant", concurrency=2, key=lambda p: p["t"])
    if "\x00" in tenant:
        with pytest.raises(JobSpecError, match="NUL"):
            limit.bound({"t": tenant})
        return
    bound = limit.bound({"t": tenant})
    assert (bound.name, bound.concurrency, bound.key) == ("tenant", 2, tenant)


def test_a_failing_key_function_is_a_typed_error_naming_the_limit() -> None:
    limit = Limit("tenant", key=lambda p: p["missing"])
    with pytest.raises(JobSpecError) as raised:
        limit.bound({})
    assert raised.value.field == "limits['tenant'].key" and "KeyError" in str(raised.value)


class Catalog(TaskCatalog):
    export = task(dict, concurrency_limit=2, limit_key=lambda p: p["t"], limits=[Limit("api")])
    plain = task(dict)


def test_the_catalog_makes_the_tasks_own_limit_first_and_binds_keys() -> None:
    spec, _, limits = build_spec(Catalog(), "export", {"t": "acme"}, {})
    assert [(lim.name, lim.concurrency, lim.key) for lim in limits] == [
        ("task:export", 2, "acme"),
        ("api", None, None),
    ]
    assert spec.flags is None  # the store adds the flag when it adds the job
    assert build_spec(Catalog(), "plain", {}, {})[2] == ()
    # per call: other limits, or none
    _, _, given = build_spec(Catalog(), "plain", {}, {"limits": [Limit("vip", key="x")]})
    assert [lim.name for lim in given] == ["vip"]
    assert build_spec(Catalog(), "export", {"t": "a"}, {"limits": None})[2] == ()


# ---------------------------------------------------------------- when limited jobs are sought


class Source:
    """Fetch functions that answer a scripted number of jobs and record what was asked."""

    def __init__(self, answers: list[int], plain: int = 0) -> None:
        self.answers = answers
        self.plain = plain  # plain jobs each plain fetch finds (at most what it asks)
        self.asked: list[tuple[str, int, list[str]]] = []

    def fetch(self, kind: str) -> Any:
        async def go(task_ids: list[int], forbidden: list[str], n: int) -> Sequence[Any]:
            self.asked.append((kind, n, list(forbidden)))
            if kind == "plain":
                return [object()] * min(n, self.plain)
            got = min(n, self.answers.pop(0)) if self.answers else 0
            return [object()] * got

        return go


def _limited_fetch(source: Source, room: float | None = None, idle: int = 4) -> LimitedFetch:
    async def next_room() -> float | None:
        return room

    return LimitedFetch(
        plain=source.fetch("plain"),
        limited=source.fetch("limited"),
        next_room=next_room,
        idle_slots=lambda: idle,
        nudge=lambda: None,
        poll_interval=3600.0,
        logger=logging.getLogger("test"),
    )


@pytest.mark.anyio
async def test_limited_jobs_are_sought_first_for_idle_slots_then_not_until_armed() -> None:
    source = Source([1, 4])
    limited = _limited_fetch(source)
    await limited.fetch([1], ["slow"], 10)
    # limited first, for the idle slots only; then plain jobs, never the limited ones
    assert source.asked == [
        ("limited", 4, ["slow"]),
        ("plain", 9, ["slow", LIMITED_FLAG]),
    ]
    assert not limited.armed  # it found fewer than asked
    source.asked.clear()
    await limited.fetch([1], ["slow"], 10)
    assert source.asked == [("plain", 10, ["slow", LIMITED_FLAG])]
    limited.arm()
    source.asked.clear()
    await limited.fetch([1], ["slow"], 4)
    assert source.asked == [("limited", 4, ["slow"])]  # all four came: no plain fetch
    assert limited.armed


@pytest.mark.anyio
async def test_the_poll_intervals_look_for_limited_jobs_never_holds_up_plain_ones() -> None:
    source = Source([0, 0], plain=2)
    nudged: list[bool] = []
    limited = _limited_fetch(source)
    limited._nudge = lambda: nudged.append(True)
    await limited.fetch([1], [], 10)  # armed at start: disarms
    source.asked.clear()
    limited._disarmed_at = time.monotonic() - 7200  # the poll interval (an hour) has passed
    got = await limited.fetch([1], [], 10)
    # plain jobs found: handed out at once, the look for limited jobs is the next fetch's
    assert (len(got), source.asked, limited.armed, nudged) == (
        2,
        [("plain", 10, [LIMITED_FLAG])],
        True,
        [True],
    )
    source.asked.clear()
    await limited.fetch([1], [], 10)
    assert [kind for kind, _, _ in source.asked] == ["limited", "plain"]
    assert not limited.armed
    # nothing plain to hand out: limited jobs are sought in the same fetch
    source.plain = 0
    source.asked.clear()
    limited._disarmed_at = time.monotonic() - 7200
    await limited.fetch([1], [], 10)
    assert [kind for kind, _, _ in source.asked] == ["plain", "limited"]
    assert len(nudged) == 1
    limited.close()


@pytest.mark.anyio
async def test_an_arm_during_a_limited_fetch_is_not_lost() -> None:
    source = Source([0])
    limited = _limited_fetch(source)
    inner = source.fetch("limited")

    async def arming(task_ids: list[int], forbidden: list[str], n: int) -> Sequence[Any]:
        limited.arm()  # a notification arrives while the fetch runs
        got: Sequence[Any] = await inner(task_ids, forbidden, n)
        return got

    limited._limited = arming
    await limited.fetch([1], [], 4)
    assert limited.armed


@pytest.mark.anyio
async def test_a_full_rate_window_wakes_the_fetch_when_it_opens() -> None:
    source = Source([0])
    woken = asyncio.Event()
    limited = _limited_fetch(source, room=0.05)
    limited._nudge = woken.set
    await limited.fetch([1], [], 4)
    assert not limited.armed
    await asyncio.wait_for(woken.wait(), 2.0)
    assert limited.armed
    limited.close()
