"""The admin commands of the command line, against real PostgreSQL, with their JSON parsed
and their exit codes: 0 done, 3 nothing found, 4 confirmation needed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import psycopg

from zodworker import JobSpec, Limit, Rate, SyncStore


def zodworker(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    return subprocess.run(
        [sys.executable, "-m", "zodworker", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )


def as_json(db_url: str, *args: str) -> Any:
    result = zodworker(*args, "-c", db_url, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_jobs_can_be_listed_shown_retried_rescheduled_and_deleted(db_url: str) -> None:
    for n in range(4):
        assert (
            zodworker(
                "-c", db_url, "add-job", "mail", json.dumps({"n": n}), "--queue", "q"
            ).returncode
            == 0
        )
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "update graphile_worker._private_jobs set attempts = max_attempts,"
            " last_error = 'Error: boom' where payload->>'n' in ('1', '2')"
        )
    listed = as_json(db_url, "jobs", "list")
    assert [j["id"] for j in listed["jobs"]] == [4, 3, 2, 1] and listed["after"] is None
    failed = as_json(db_url, "jobs", "list", "--state", "failed")
    assert sorted(j["id"] for j in failed["jobs"]) == [2, 3]
    page = as_json(db_url, "jobs", "list", "--limit", "3", "--oldest")
    assert [j["id"] for j in page["jobs"]] == [1, 2, 3] and page["after"] == 3
    shown = as_json(db_url, "jobs", "show", "2")
    assert (shown["state"], shown["last_error"], shown["payload"]) == (
        "failed",
        "Error: boom",
        {"n": 1},
    )
    assert zodworker("jobs", "show", "99", "-c", db_url).returncode == 3

    asked = zodworker("jobs", "retry", "--state", "failed", "-c", db_url)
    assert asked.returncode == 4 and "2 jobs match" in asked.stdout
    retried = as_json(db_url, "jobs", "retry", "--state", "failed", "--yes")
    assert sorted(retried["ids"]) == [2, 3]
    assert as_json(db_url, "jobs", "list", "--state", "failed")["jobs"] == []
    moved = as_json(db_url, "jobs", "reschedule", "4", "--run-at", "2031-01-01T00:00:00Z", "--yes")
    assert moved["ids"] == [4]
    assert as_json(db_url, "jobs", "show", "4")["state"] == "scheduled"
    assert zodworker("jobs", "delete", "--task", "nothing", "--yes", "-c", db_url).returncode == 3
    deleted = as_json(db_url, "jobs", "delete", "--queue", "q", "--yes")
    assert deleted["changed"] == 4


def test_queues_stats_workers_unlock_and_cancel(db_url: str) -> None:
    for task, queue in [("a", "q1"), ("a", "q1"), ("b", "q2")]:
        assert zodworker("-c", db_url, "add-job", task, "{}", "--queue", queue).returncode == 0
    assert zodworker("queues", "pause", "q1", "-c", db_url).returncode == 0
    queues = {q["name"]: q for q in as_json(db_url, "queues", "list")}
    assert (queues["q1"]["paused"], queues["q1"]["depth"], queues["q2"]["paused"]) == (
        True,
        2,
        False,
    )
    assert zodworker("queues", "resume", "q1", "-c", db_url).returncode == 0
    assert not as_json(db_url, "queues", "list")[0]["paused"]
    stats = as_json(db_url, "stats")
    assert stats["exact"] is True
    assert {(c["task"], c["queue"], c["state"], c["count"]) for c in stats["counts"]} == {
        ("a", "q1", "ready", 2),
        ("b", "q2", "ready", 1),
    }
    assert set(stats["oldest_ready_age_seconds"]) == {"q1", "q2"}
    assert as_json(db_url, "workers", "list") == []
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "update graphile_worker._private_jobs set locked_by = 'ghost', locked_at = now()"
            " where id = 1"
        )
    assert zodworker("unlock", "ghost", "-c", db_url).returncode == 0
    assert as_json(db_url, "jobs", "show", "1")["locked_by"] is None
    cancelled = as_json(db_url, "jobs", "cancel", "3")
    assert cancelled == {"id": 3, "running_on": None}
    assert as_json(db_url, "jobs", "show", "3")["state"] == "failed"
    assert zodworker("jobs", "cancel", "99", "-c", db_url).returncode == 3
    assert zodworker("queues", "pause", "-c", db_url).returncode == 1  # no name


def test_limits_are_listed_set_and_reset_and_shown_in_stats(db_url: str) -> None:
    tenant = Limit("tenant", concurrency=3, rate=Rate(20, per=1.0), key="acme")
    with psycopg.connect(db_url, autocommit=True) as conn:
        SyncStore().add_jobs(conn, [JobSpec(identifier="t")] * 2, limits=[[tenant]] * 2)
    [listed] = as_json(db_url, "limits", "list")
    assert (listed["name"], listed["concurrency"], listed["rate"]) == (
        "tenant",
        3,
        {"count": 20, "per": 1.0},
    )
    assert (listed["keys"], listed["running"], listed["waiting"]) == (1, 0, 2)
    done = zodworker(
        "limits", "set", "tenant", "--concurrency", "none", "--rate", "5/2", "-c", db_url
    )
    assert done.returncode == 0, done.stderr
    [changed] = as_json(db_url, "limits", "list")
    assert (changed["concurrency"], changed["rate"], changed["overridden"]) == (
        None,
        {"count": 5, "per": 2.0},
        True,
    )
    assert changed["declared_concurrency"] == 3
    bad = zodworker("limits", "set", "tenant", "--rate", "fast", "-c", db_url)
    assert bad.returncode == 2 and "COUNT/SECONDS" in bad.stderr
    assert zodworker("limits", "reset", "tenant", "-c", db_url).returncode == 0
    assert zodworker("limits", "reset", "nope", "-c", db_url).returncode == 1
    stats = as_json(db_url, "stats")
    [shown] = stats["limits"]
    assert (shown["concurrency"], shown["overridden"], shown["waiting"]) == (3, False, 2)
    table = zodworker("stats", "-c", db_url)
    assert "tenant" in table.stdout and "waiting" in table.stdout
