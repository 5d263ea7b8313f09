"""The dashboard's pages (GET): overview, jobs, one job, failed jobs, queues, limits,
workers, cron.

Each ``page(dashboard)`` returns the request handler. What a page reads comes from the
admin API; a part that needs zodworker's own tables (absent on a database only Node
graphile-worker has used) is replaced by a note saying so.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from ..admin import JobFilter, JobState, Stats
from ..db.admin_plans import JOB_STATES
from ..errors import DatabaseError, JobSpecError
from .dashboard import NEEDS_ZODWORKER, Dashboard, Handler, lacks_zodworker_tables

__all__ = [
    "FILTER_FIELDS",
    "PAGES",
    "job_filter",
    "optional",
    "overview_context",
]

STATE_ORDER: Final[tuple[JobState, ...]] = ("ready", "scheduled", "running", "retrying", "failed")
PAGE_SIZE: Final = 50
FILTER_FIELDS: Final = ("task", "queue", "state", "key", "flag", "text")
FAILED_SAMPLE: Final = 1000
_pretty = msgspec.json.Encoder(order="sorted")


def optional(value: str | None) -> str | None:
    """A form or query value, None when blank."""
    value = (value or "").strip()
    return value or None


def job_filter(values: Any) -> JobFilter:
    """The filter a query string or form names (``JobSpecError`` naming a bad field)."""
    state = optional(values.get("state"))
    if state is not None and state not in JOB_STATES:
        raise JobSpecError("state", f"is {state!r}; expected one of {', '.join(STATE_ORDER)}")
    ids = [int(i) for i in values.getlist("ids") if str(i).isdigit()] or None
    return JobFilter(
        task=optional(values.get("task")),
        queue=optional(values.get("queue")),
        state=state,  # type: ignore[arg-type]
        key=optional(values.get("key")),
        flag=optional(values.get("flag")),
        text=optional(values.get("text")),
        ids=ids,
    )


async def _or_note(read: Callable[[], Awaitable[Any]]) -> tuple[Any, str | None]:
    """``read()``'s result, or (None, a note) when it needs zodworker's tables."""
    try:
        return await read(), None
    except DatabaseError as exc:
        if lacks_zodworker_tables(exc):
            return None, NEEDS_ZODWORKER
        raise


@dataclass(frozen=True, slots=True)
class Line:
    """One row of the overview's table: a task in a queue, its jobs per state."""

    task: str | None
    queue: str | None
    counts: dict[str, str]


def overview_values(stats: Stats) -> dict[str, Any]:
    """The overview's table (task x queue rows, a column per state) and totals."""
    lines: dict[tuple[str | None, str | None], Line] = {}
    totals = dict.fromkeys(STATE_ORDER, 0)
    for row in stats.rows:
        line = lines.setdefault((row.task, row.queue), Line(row.task, row.queue, {}))
        line.counts[row.state] = str(row.count)
        totals[row.state] += row.count.value
    now = datetime.now(UTC)
    oldest = {
        queue or "(no queue)": max(0.0, (now - due).total_seconds())
        for queue, due in sorted(stats.oldest_ready.items(), key=lambda item: item[0] or "")
    }
    return {
        "lines": list(lines.values()),
        "states": STATE_ORDER,
        "totals": totals,
        "exact": stats.exact,
        "oldest": oldest,
    }


async def overview_context(d: Dashboard) -> dict[str, Any]:
    """Everything the overview shows (also for its live part); samples the throughput."""
    target = await d.target()
    stats = await d.admin.stats(target)
    workers, note = await _or_note(lambda: d.admin.list_workers(target))
    if d.meter.due():
        d.meter.add(workers, await d.admin.deleted_total(target))
    rates = d.meter.rates(pools_known=note is None)
    return {**overview_values(stats), "workers": workers, "note": note, "rates": rates}


def overview(d: Dashboard) -> Handler:
    async def handle(request: Request) -> Response:
        return d.render(request, "overview.html", **await overview_context(d))

    return handle


async def jobs_values(d: Dashboard, request: Request) -> dict[str, Any]:
    """The jobs page's filter, page of jobs and cursor (also for its live table)."""
    query = request.query_params
    after = query.get("after")
    where = job_filter(query)
    target = await d.target()
    page = await d.admin.list_jobs(
        target, where, limit=PAGE_SIZE, after=int(after) if after and after.isdigit() else None
    )
    shown = {k: v for k, v in query.items() if k in FILTER_FIELDS and v}
    return {"page": page, "filters": shown, "states": STATE_ORDER, "after": after}


def jobs(d: Dashboard) -> Handler:
    async def handle(request: Request) -> Response:
        try:
            values = await jobs_values(d, request)
        except JobSpecError as exc:
            return d.render(request, "error.html", 400, message=str(exc))
        return d.render(request, "jobs.html", **values, done=request.query_params.get("done"))

    return handle


def job(d: Dashboard) -> Handler:
    async def handle(request: Request) -> Response:
        job_id = int(request.path_params["job_id"])
        target = await d.target()
        view = await d.admin.get_job(target, job_id)
        found, _ = await _or_note(lambda: d.admin.history(target, job_id=job_id, limit=1))
        record = found[0] if found else None
        if view is None and record is None:
            return d.render(request, "error.html", 404, message=f"no job {job_id}")
        shown = view.job.payload if view is not None else record.payload  # type: ignore[union-attr]
        return d.render(
            request,
            "job.html",
            view=view,
            job=None if view is None else view.job,
            job_id=job_id,
            record=record,
            output=None if record is None else _pretty_json(record.output),
            payload=_pretty_json(shown),
            done=request.query_params.get("done"),
        )

    return handle


def _pretty_json(value: Any) -> str:
    return msgspec.json.format(_pretty.encode(value).decode(), indent=2)


def history(d: Dashboard) -> Handler:
    async def handle(request: Request) -> Response:
        values = request.query_params
        before = values.get("before")
        task, outcome = optional(values.get("task")), optional(values.get("outcome"))
        target = await d.target()
        try:
            found, note = await _or_note(
                lambda: d.admin.history(
                    target,
                    task=task,
                    outcome=outcome,
                    before=int(before) if before and before.isdigit() else None,
                    limit=PAGE_SIZE,
                )
            )
        except JobSpecError as exc:
            return d.render(request, "error.html", 400, message=str(exc))
        more = found[-1].job_id if found and len(found) == PAGE_SIZE else None
        return d.render(
            request,
            "history.html",
            rows=found or [],
            note=note,
            task=task,
            outcome=outcome,
            more=more,
        )

    return handle


def failed(d: Dashboard) -> Handler:
    async def handle(request: Request) -> Response:
        where = JobFilter(state="failed")
        page = await d.admin.list_jobs(await d.target(), where, limit=FAILED_SAMPLE)
        groups: dict[tuple[str, str], list[int]] = {}
        for view in page.jobs:
            error = (view.job.last_error or "").strip().splitlines()
            key = (view.job.task_identifier, error[-1] if error else "(no error recorded)")
            groups.setdefault(key, []).append(view.job.id)
        ordered = sorted(groups.items(), key=lambda item: -len(item[1]))
        return d.render(
            request, "failed.html", groups=ordered, sample=FAILED_SAMPLE, more=page.after
        )

    return handle


def queues(d: Dashboard) -> Handler:
    async def handle(request: Request) -> Response:
        found = await d.admin.list_queues(await d.target())
        done = request.query_params.get("done")
        return d.render(request, "queues.html", queues=found, note=NEEDS_ZODWORKER, done=done)

    return handle


def limits(d: Dashboard) -> Handler:
    async def handle(request: Request) -> Response:
        found = await d.admin.limits(await d.target())
        done = request.query_params.get("done")
        return d.render(request, "limits.html", limits=found, done=done)

    return handle


def workers(d: Dashboard) -> Handler:
    async def handle(request: Request) -> Response:
        target = await d.target()
        found, note = await _or_note(lambda: d.admin.list_workers(target))
        return d.render(request, "workers.html", workers=found, note=note)

    return handle


def cron(d: Dashboard) -> Handler:
    async def handle(request: Request) -> Response:
        known = {k.identifier: k for k in await d.admin.known_crontabs(await d.target())}
        given = {item.identifier: item for item in d.crontab}
        now = datetime.now(UTC)
        rows = [
            {
                "identifier": name,
                "known": known.get(name),
                "item": given.get(name),
                "next": given[name].next_runs(now, 3) if name in given else [],
            }
            for name in sorted(known.keys() | given.keys())
        ]
        return d.render(request, "cron.html", rows=rows, given=bool(d.crontab))

    return handle


PAGES: Final[list[tuple[str, Callable[[Dashboard], Handler]]]] = [
    ("/", overview),
    ("/jobs", jobs),
    ("/jobs/{job_id:int}", job),
    ("/history", history),
    ("/failed", failed),
    ("/queues", queues),
    ("/limits", limits),
    ("/workers", workers),
    ("/cron", cron),
]
