"""The slot and window accounting of limited fetches, property-tested against PostgreSQL.

Hypothesis drives the database's limited fetch (``_zodworker_get_limited_jobs``) with a
clock of its own (the function's ``p_at``) through fetches and completions, beside a model
of what the limits allow. After every fetch: no key runs more than its concurrency, no
key's rate window holds more than its count, and the fetch took exactly as many jobs as
there was room and work for (a limit never leaves room unused when a pool asks).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zodworker import JobSpec, Limit, Rate, SyncStore
from zodworker.db import sqlfiles

SCHEMA = "graphile_worker"
POOL = "prop-pool"

fetch_op = st.tuples(st.just("fetch"), st.integers(1, 6), st.sampled_from([0, 100, 300, 500, 1000]))
finish_op = st.tuples(st.just("finish"), st.integers(0, 10), st.sampled_from([0, 50, 200]))


def _reset(conn: psycopg.Connection[Any]) -> int:
    conn.execute(
        "truncate graphile_worker._private_jobs, graphile_worker._zodworker_limits,"
        " graphile_worker._zodworker_limit_keys, graphile_worker._zodworker_limited_jobs,"
        " graphile_worker._zodworker_limit_slots, graphile_worker._zodworker_limit_starts"
    )
    conn.execute("delete from graphile_worker._zodworker_pools where pool_id = %s", (POOL,))
    conn.execute(
        "insert into graphile_worker._zodworker_pools (pool_id, lease_expires_at)"
        " values (%s, now() + interval '1 day')",
        (POOL,),
    )
    row = conn.execute(
        "insert into graphile_worker._private_tasks (identifier) values ('limited')"
        " on conflict (identifier) do update set identifier = excluded.identifier returning id"
    ).fetchone()
    assert row is not None
    return int(row[0])


FETCH = (
    "select id, payload->>'k' from graphile_worker._zodworker_get_limited_jobs"
    "(%s, %s, '{}', %s, %s)"
)


def _fetch(conn: psycopg.Connection[Any], task_id: int, n: int, at: datetime) -> list[Any]:
    """The limited fetch of the test pool at the clock ``at``: (job id, key) rows."""
    return conn.execute(FETCH, (POOL, [task_id], n, at)).fetchall()


def _finish(conn: psycopg.Connection[Any], done: list[int]) -> None:
    """The test pool completes ``done``: their rows go, their slots are freed."""
    conn.execute("delete from graphile_worker._private_jobs where id = any(%s)", (done,))
    conn.execute(sqlfiles.query("release_limited", SCHEMA), {"ids": done, "owner": POOL})


@pytest.fixture
def sync_conn(db_url: str) -> Any:
    with psycopg.connect(db_url, autocommit=True) as conn:
        yield conn


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    concurrency=st.none() | st.integers(0, 4),
    rate=st.none() | st.tuples(st.integers(1, 5), st.sampled_from([500, 1000, 2000])),
    jobs_per_key=st.lists(st.integers(0, 8), min_size=1, max_size=3),
    ops=st.lists(st.one_of(fetch_op, finish_op), min_size=1, max_size=25),
)
def test_limited_fetch_respects_and_fills_every_limit(
    sync_conn: psycopg.Connection[Any],
    concurrency: int | None,
    rate: tuple[int, int] | None,
    jobs_per_key: list[int],
    ops: list[tuple[str, int, int]],
) -> None:
    conn = sync_conn
    task_id = _reset(conn)
    limit = Limit(
        "prop",
        concurrency=concurrency,
        rate=None if rate is None else Rate(rate[0], per=rate[1] / 1000),
        key=lambda payload: payload["k"],
    )
    specs = [
        JobSpec(identifier="limited", payload={"k": f"k{k}"})
        for k, n in enumerate(jobs_per_key)
        for _ in range(n)
    ]
    if specs:
        SyncStore().add_jobs(conn, specs, limits=[[limit]] * len(specs))
    base = datetime.now(UTC) + timedelta(seconds=5)
    waiting: dict[str, int] = {f"k{k}": n for k, n in enumerate(jobs_per_key)}
    running: dict[str, set[int]] = defaultdict(set)
    starts: dict[str, list[int]] = defaultdict(list)
    key_of: dict[int, str] = {}
    clock = 0
    for op, amount, step in ops:
        clock += step
        at = base + timedelta(milliseconds=clock)
        if op == "fetch":
            room = {key: _room(key, clock, concurrency, rate, running, starts) for key in waiting}
            expected = min(amount, sum(min(room[k], waiting[k]) for k in waiting))
            rows = _fetch(conn, task_id, amount, at)
            assert len(rows) == expected, (room, waiting, rows)
            taken: dict[str, int] = defaultdict(int)
            for job_id, key in rows:
                taken[key] += 1
                running[key].add(job_id)
                starts[key].append(clock)
                key_of[job_id] = key
                waiting[key] -= 1
            for key, count in taken.items():
                assert count <= min(room[key], count + waiting[key])
                if concurrency is not None:
                    assert len(running[key]) <= concurrency
                if rate is not None:
                    assert sum(1 for t in starts[key] if t > clock - rate[1]) <= rate[0]
        else:
            done = sorted(key_of)[:amount]
            if not done:
                continue
            _finish(conn, done)
            for job_id in done:
                running[key_of.pop(job_id)].discard(job_id)
        slots = conn.execute(
            "select count(*) from graphile_worker._zodworker_limit_slots"
        ).fetchone()
        assert slots is not None and slots[0] == sum(len(ids) for ids in running.values())


def _room(
    key: str,
    clock: int,
    concurrency: int | None,
    rate: tuple[int, int] | None,
    running: dict[str, set[int]],
    starts: dict[str, list[int]],
) -> int:
    room = 1_000_000
    if concurrency is not None:
        room = min(room, concurrency - len(running[key]))
    if rate is not None:
        count, per = rate
        room = min(room, count - sum(1 for t in starts[key] if t > clock - per))
    return max(room, 0)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    per_tenant=st.integers(0, 3),
    shared=st.one_of(
        st.tuples(st.just("concurrency"), st.integers(0, 4)),
        st.tuples(st.just("rate"), st.integers(1, 4)),
    ),
    jobs_per_key=st.lists(st.integers(0, 5), min_size=1, max_size=3),
    ops=st.lists(st.one_of(fetch_op, finish_op), min_size=1, max_size=20),
)
def test_a_job_under_two_limits_starts_only_when_both_have_room(
    sync_conn: psycopg.Connection[Any],
    per_tenant: int,
    shared: tuple[str, int],
    jobs_per_key: list[int],
    ops: list[tuple[str, int, int]],
) -> None:
    """Per-tenant concurrency (the job's first limit: its turn) and one shared limit over
    every tenant (a concurrency or a rate of 1 s): after every fetch neither is exceeded,
    and a fetch that got fewer jobs than asked left no waiting job that both had room for."""
    conn = sync_conn
    task_id = _reset(conn)
    kind, amount_shared = shared
    tenant = Limit("tenant", concurrency=per_tenant, key=lambda p: p["k"])
    if kind == "concurrency":
        api = Limit("api", concurrency=amount_shared)
    else:
        api = Limit("api", rate=Rate(amount_shared, per=1.0))
    specs = [
        JobSpec(identifier="limited", payload={"k": f"k{k}"})
        for k, n in enumerate(jobs_per_key)
        for _ in range(n)
    ]
    if specs:
        SyncStore().add_jobs(conn, specs, limits=[[tenant, api]] * len(specs))
    base = datetime.now(UTC) + timedelta(seconds=5)
    waiting = {f"k{k}": n for k, n in enumerate(jobs_per_key)}
    running: dict[str, set[int]] = defaultdict(set)
    starts: list[int] = []
    key_of: dict[int, str] = {}
    clock = 0
    for op, amount, step in ops:
        clock += step
        if op == "fetch":
            for job_id, key in _fetch(conn, task_id, amount, base + timedelta(milliseconds=clock)):
                running[key].add(job_id)
                starts.append(clock)
                key_of[job_id] = key
                waiting[key] -= 1
                amount -= 1
            all_running = sum(len(ids) for ids in running.values())
            in_window = sum(1 for t in starts if t > clock - 1000)
            assert all(len(ids) <= per_tenant for ids in running.values())
            if kind == "concurrency":
                assert all_running <= amount_shared
                shared_room = amount_shared - all_running
            else:
                assert in_window <= amount_shared
                shared_room = amount_shared - in_window
            if amount > 0:  # fewer than asked: nothing left that both limits allow
                tenants_with_room = [
                    key for key, n in waiting.items() if n > 0 and len(running[key]) < per_tenant
                ]
                assert shared_room <= 0 or not tenants_with_room, (shared_room, tenants_with_room)
        else:
            done = sorted(key_of)[:amount]
            if done:
                _finish(conn, done)
                for job_id in done:
                    running[key_of.pop(job_id)].discard(job_id)


def test_one_fetch_serves_keys_round_robin_before_giving_any_a_second_job(
    sync_conn: psycopg.Connection[Any],
) -> None:
    conn = sync_conn
    task_id = _reset(conn)
    tenant = Limit("tenant", key=lambda p: p["k"])  # no cap: only the turns
    counts = {"a": 10, "b": 2, "c": 2, "d": 1}
    specs = [
        JobSpec(identifier="limited", payload={"k": k}) for k, n in counts.items() for _ in range(n)
    ]
    SyncStore().add_jobs(conn, specs, limits=[[tenant]] * len(specs))
    at = datetime.now(UTC) + timedelta(seconds=5)

    def take(n: int) -> list[str]:
        return [key for _, key in _fetch(conn, task_id, n, at)]

    assert take(4) == ["a", "b", "c", "d"]  # four idle slots: four tenants, one each
    # d has nothing left; the others' turn comes round again, then a takes the rest
    assert take(6) == ["a", "b", "c", "a", "a", "a"]
