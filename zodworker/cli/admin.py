"""``zodworker jobs|queues|stats|limits|workers|unlock``: the admin API on the command line.

Every command prints an aligned table, or JSON with ``--json``. Bulk commands (``jobs
retry|delete|reschedule``) act on the ids given or on what the filters select; without
``--yes`` they only say how many jobs would change and exit 4. Exit codes: 0 done, 1 error,
2 bad usage, 3 nothing found (an unknown job id, no job matched), 4 confirmation needed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from ..admin import Admin, JobFilter, JobView, LimitInfo
from ..db.rows import AsyncTarget
from ..errors import ConfigError
from ..limits import Rate

__all__ = ["EXIT_NEEDS_YES", "EXIT_NOT_FOUND", "run_admin"]

EXIT_NOT_FOUND = 3
EXIT_NEEDS_YES = 4


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[_cell(value) for value in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    return str(value)


def _json(value: Any) -> str:
    return json.dumps(value, default=_cell, indent=2, sort_keys=True)


def _job_dict(view: JobView) -> dict[str, Any]:
    job = view.job
    return {
        "id": job.id,
        "task": job.task_identifier,
        "queue": job.queue_name,
        "state": view.state,
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "priority": job.priority,
        "run_at": job.run_at,
        "key": job.key,
        "flags": sorted(job.flags or {}),
        "locked_by": job.locked_by,
        "locked_at": job.locked_at,
        "created_at": job.created_at,
        "updated_at": job.updated_at,
        "last_error": job.last_error,
        "payload": job.payload,
    }


def _filter(args: argparse.Namespace) -> JobFilter:
    ids = getattr(args, "ids", None) or None
    return JobFilter(
        task=args.task,
        queue=args.queue,
        state=args.state,
        key=args.key,
        flag=args.flag,
        ids=ids,
        text=args.text,
    )


async def _jobs_list(admin: Admin, target: AsyncTarget, args: argparse.Namespace) -> int:
    page = await admin.list_jobs(
        target, _filter(args), limit=args.limit, after=args.after, newest=not args.oldest
    )
    if args.json:
        print(_json({"jobs": [_job_dict(v) for v in page.jobs], "after": page.after}))
        return 0
    rows = [
        (
            v.job.id,
            v.job.task_identifier,
            v.job.queue_name,
            v.state,
            f"{v.job.attempts}/{v.job.max_attempts}",
            v.job.run_at,
            (v.job.last_error or "").splitlines()[0][:60] if v.job.last_error else None,
        )
        for v in page.jobs
    ]
    print(_table(("id", "task", "queue", "state", "attempts", "run_at", "last_error"), rows))
    if page.after is not None:
        print(f"more: --after {page.after}")
    return 0


async def _jobs_show(admin: Admin, target: AsyncTarget, args: argparse.Namespace) -> int:
    view = await admin.get_job(target, args.id)
    if view is None:
        print(f"no job {args.id}")
        return EXIT_NOT_FOUND
    data = _job_dict(view)
    if args.json:
        print(_json(data))
        return 0
    for key in (
        "id",
        "task",
        "queue",
        "state",
        "attempts",
        "max_attempts",
        "priority",
        "run_at",
        "key",
        "flags",
        "locked_by",
        "locked_at",
        "created_at",
        "updated_at",
    ):
        print(f"{key:<13} {_cell(data[key])}")
    print(f"payload       {json.dumps(data['payload'])}")
    print(f"last_error    {data['last_error'] or '-'}")
    return 0


async def _jobs_history(admin: Admin, target: AsyncTarget, args: argparse.Namespace) -> int:
    found = await admin.history(
        target,
        task=args.task,
        outcome=args.outcome,
        job_id=args.job,
        before=args.before,
        limit=args.limit,
    )
    after = found[-1].job_id if len(found) == args.limit else None
    if args.json:
        print(_json({"jobs": [row.as_dict() for row in found], "before": after}))
        return 0
    rows = [
        (
            row.job_id,
            row.task,
            row.outcome,
            f"{row.attempts}/{row.max_attempts}",
            row.finished_at,
            None if row.duration is None else f"{row.duration * 1000:.1f} ms",
            json.dumps(row.output)[:40] if row.outcome == "success" else _first(row.last_error),
        )
        for row in found
    ]
    print(_table(("id", "task", "outcome", "attempts", "finished_at", "ran", "output/error"), rows))
    if after is not None:
        print(f"more: --before {after}")
    return 0


def _first(error: str | None) -> str | None:
    return error.splitlines()[0][:60] if error else None


async def _jobs_bulk(admin: Admin, target: AsyncTarget, args: argparse.Namespace) -> int:
    where = _filter(args)
    if where == JobFilter() and not args.all:
        raise ConfigError("filters", "give job ids or filters (or --all to act on every job)")
    count = await admin.count_jobs(target, where)
    if count.value == 0:
        print("no job matches")
        return EXIT_NOT_FOUND
    if not args.yes:
        shown = str(count.value) if count.exact else f"more than {count.value - 1}"
        print(f"{shown} jobs match; run again with --yes to {args.action} them")
        return EXIT_NEEDS_YES
    if args.action == "retry":
        changed = await admin.retry_jobs(target, where)
    elif args.action == "delete":
        changed = await admin.delete_jobs(target, where)
    else:
        changed = await admin.reschedule_jobs(target, where, _run_at(args.run_at))
    print(
        _json({"changed": len(changed), "ids": changed})
        if args.json
        else f"{args.action}: {len(changed)} jobs (jobs a live worker holds were skipped)"
    )
    return 0


def _run_at(text: str | None) -> datetime:
    try:
        when = datetime.fromisoformat(text or "")
    except ValueError:
        raise ConfigError("--run-at", f"{text!r} is not an ISO 8601 time with an offset") from None
    if when.utcoffset() is None:
        raise ConfigError("--run-at", "needs an offset, e.g. 2030-01-01T00:00:00Z")
    return when


async def _jobs_cancel(admin: Admin, target: AsyncTarget, args: argparse.Namespace) -> int:
    cancelled = await admin.cancel_job(target, args.id)
    if cancelled is None:
        print(f"no job {args.id}")
        return EXIT_NOT_FOUND
    how = (
        f"running on {cancelled.running_on}: told to abort"
        if cancelled.running_on
        else ("not running: failed for good")
    )
    print(
        _json({"id": cancelled.job_id, "running_on": cancelled.running_on})
        if args.json
        else f"cancelled job {cancelled.job_id} ({how})"
    )
    return 0


async def _queues(admin: Admin, target: AsyncTarget, args: argparse.Namespace) -> int:
    if args.action in ("pause", "resume"):
        call = admin.pause_queue if args.action == "pause" else admin.resume_queue
        changed = await call(target, args.name)
        already = "paused" if args.action == "pause" else "running"
        done = f"{args.action}d" if changed else f"was already {already}"
        print(f"queue {args.name!r} {done}")
        return 0
    queues = await admin.list_queues(target)
    if args.json:
        print(
            _json(
                [
                    {
                        "name": q.name,
                        "depth": q.depth.value,
                        "depth_exact": q.depth.exact,
                        "locked_by": q.locked_by,
                        "locked_at": q.locked_at,
                        "paused": q.paused,
                    }
                    for q in queues
                ]
            )
        )
        return 0
    rows = [(q.name, q.depth, "paused" if q.paused else (q.locked_by or "-")) for q in queues]
    print(_table(("queue", "depth", "held by"), rows))
    return 0


async def _stats(admin: Admin, target: AsyncTarget, args: argparse.Namespace) -> int:
    stats = await admin.stats(target)
    now = datetime.now(UTC)
    ages = {q: (now - due).total_seconds() for q, due in stats.oldest_ready.items()}
    if args.json:
        print(
            _json(
                {
                    "exact": stats.exact,
                    "counts": [
                        {"task": r.task, "queue": r.queue, "state": r.state, "count": r.count.value}
                        for r in stats.rows
                    ],
                    "oldest_ready_age_seconds": {q or "": round(a, 3) for q, a in ages.items()},
                    "limits": [_limit_dict(i) for i in stats.limits],
                }
            )
        )
        return 0
    print(
        _table(
            ("task", "queue", "state", "jobs"),
            [(r.task, r.queue, r.state, r.count) for r in stats.rows],
        )
    )
    if not stats.exact:
        print("(~: estimated from a sample of the table; the table is large)")
    if stats.limits:
        print()
        print(_limits_table(stats.limits))
    if ages:
        print()
        print(
            _table(
                ("queue", "oldest ready job waits"),
                [(q or "(no queue)", f"{a:.1f}s") for q, a in sorted(ages.items(), key=str)],
            )
        )
    return 0


def _rate_text(rate: Rate | None) -> str:
    return "-" if rate is None else f"{rate.count}/{rate.per:g}s"


def _limits_table(limits: Sequence[LimitInfo]) -> str:
    rows = [
        (
            i.name,
            "-" if i.concurrency is None else i.concurrency,
            _rate_text(i.rate),
            "set" if i.overridden else "code",
            i.keys,
            i.running,
            i.waiting,
        )
        for i in limits
    ]
    headers = ("limit", "concurrency", "rate", "from", "keys", "running", "waiting")
    return _table(headers, rows)


def _limit_dict(info: LimitInfo) -> dict[str, Any]:
    found = dataclasses.asdict(info)
    found["waiting"], found["waiting_exact"] = info.waiting.value, info.waiting.exact
    return found


async def _limits(admin: Admin, target: AsyncTarget, args: argparse.Namespace) -> int:
    if args.action != "list" and not args.name:
        raise ConfigError("name", f"`limits {args.action}` needs the limit's name")
    if args.action == "set":
        chosen = {k: getattr(args, k) for k in ("concurrency", "rate") if hasattr(args, k)}
        if not chosen:
            raise ConfigError("limits set", "give --concurrency and/or --rate")
        await admin.set_limit(target, args.name, **chosen)
        print(f"limit {args.name!r} set; every pool uses it at its next fetch")
        return 0
    if args.action == "reset":
        found = await admin.reset_limit(target, args.name)
        print(f"limit {args.name!r} " + ("back to its declared numbers" if found else "not found"))
        return 0 if found else 1
    limits = await admin.limits(target)
    print(_json([_limit_dict(i) for i in limits]) if args.json else _limits_table(limits))
    return 0


async def _workers(admin: Admin, target: AsyncTarget, args: argparse.Namespace) -> int:
    workers = await admin.list_workers(target)
    if args.json:
        print(_json([dataclasses.asdict(w) for w in workers]))
        return 0
    rows = [
        (w.pool_id, w.hostname, w.pid, w.started_at, w.lease_expires_at, w.running) for w in workers
    ]
    print(_table(("pool", "host", "pid", "started", "lease expires", "running"), rows))
    return 0


async def _unlock(admin: Admin, target: AsyncTarget, args: argparse.Namespace) -> int:
    await admin.unlock_workers(target, args.workers)
    print(f"released every job and queue held by {', '.join(args.workers)}")
    return 0


_COMMANDS = {
    ("jobs", "list"): _jobs_list,
    ("jobs", "show"): _jobs_show,
    ("jobs", "retry"): _jobs_bulk,
    ("jobs", "delete"): _jobs_bulk,
    ("jobs", "reschedule"): _jobs_bulk,
    ("jobs", "cancel"): _jobs_cancel,
    ("jobs", "history"): _jobs_history,
    ("queues", None): _queues,
    ("stats", None): _stats,
    ("limits", None): _limits,
    ("workers", None): _workers,
    ("unlock", None): _unlock,
}


async def run_admin(target: AsyncTarget, args: argparse.Namespace, schema: str) -> int:
    """Run the admin command ``args`` asks for on ``schema``; return the exit code."""
    key = (args.command, getattr(args, "action", None) if args.command == "jobs" else None)
    return await _COMMANDS[key](Admin(schema), target, args)
