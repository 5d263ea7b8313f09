"""The dashboard's actions (POST, behind CSRF and read-only checks; see :mod:`.app`).

A bulk action first answers with a confirmation page that shows how many jobs it would
change; only the confirmed POST acts. Every action ends in a redirect (POST, redirect,
GET), with what was done in the ``done`` query parameter.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Final
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from ..admin import JobFilter
from ..db.rows import AsyncTarget
from ..errors import JobSpecError
from ..limits import Rate
from .dashboard import Dashboard, Handler
from .pages import FILTER_FIELDS, job_filter

__all__ = ["ACTIONS"]

BULK: Final = ("retry", "delete", "reschedule", "cancel")


def _back(request: Request, path: str, done: str, **query: str) -> Response:
    base = request.scope.get("root_path", "")
    params = urlencode({**query, "done": done})
    return RedirectResponse(f"{base}{path}?{params}", status_code=303)


def bulk(d: Dashboard) -> Handler:
    """Retry, cancel, reschedule or delete the jobs ticked (``ids``) or all that match the
    filter, once a confirmation page has shown how many."""

    async def handle(request: Request) -> Response:
        form = await request.form()
        action = str(form.get("action", ""))
        if action not in BULK:
            return d.render(request, "error.html", 400, message=f"unknown action {action!r}")
        try:
            where = job_filter(form)
        except JobSpecError as exc:
            return d.render(request, "error.html", 400, message=str(exc))
        filters = {k: str(form[k]) for k in FILTER_FIELDS if form.get(k)}
        minutes = _minutes(form.get("minutes")) if action == "reschedule" else 0.0
        if minutes is None:
            message = "minutes: give how many minutes from now to move the jobs to, e.g. 30"
            return d.render(request, "error.html", 400, message=message)
        target = await d.target()
        if form.get("confirmed") != "yes":
            count = await d.admin.count_jobs(target, where)
            ids = [str(i) for i in where.ids or ()]
            return d.render(
                request,
                "confirm.html",
                action=action,
                count=count,
                filters=filters,
                ids=ids,
                minutes=minutes,
            )
        changed = await _bulk(d, target, action, where, minutes)
        return _back(request, "/jobs", f"{action}: {len(changed)} jobs", **filters)

    return handle


def _minutes(value: object) -> float | None:
    try:
        minutes = float(str(value))
    except ValueError:
        return None
    return minutes if 0 <= minutes <= 10_000_000 else None


async def _bulk(
    d: Dashboard, target: AsyncTarget, action: str, where: JobFilter, minutes: float
) -> list[int]:
    if action == "retry":
        return await d.admin.retry_jobs(target, where)
    if action == "delete":
        return await d.admin.delete_jobs(target, where)
    if action == "cancel":
        return await d.admin.cancel_jobs(target, where)
    run_at = datetime.now(UTC) + timedelta(minutes=minutes)
    return await d.admin.reschedule_jobs(target, where, run_at)


def job_action(d: Dashboard) -> Handler:
    """Retry, delete or cancel one job."""

    async def handle(request: Request) -> Response:
        job_id = int(request.path_params["job_id"])
        action = request.path_params["action"]
        target = await d.target()
        path = f"/jobs/{job_id}"
        if action == "cancel":
            cancelled = await d.admin.cancel_job(target, job_id)
            if cancelled is None:
                return d.render(request, "error.html", 404, message=f"no job {job_id}")
            how = f"told {cancelled.running_on} to abort it" if cancelled.running_on else "failed"
            return _back(request, path, f"cancelled ({how})")
        if action not in ("retry", "delete"):
            return d.render(request, "error.html", 400, message=f"unknown action {action!r}")
        changed = await _bulk(d, target, action, JobFilter(ids=[job_id]), 0.0)
        if action == "delete" and changed:
            return _back(request, "/jobs", f"deleted job {job_id}")
        done = f"{action}: done" if changed else f"{action}: skipped (a live worker holds it)"
        return _back(request, path, done)

    return handle


def queue_action(d: Dashboard) -> Handler:
    """Pause or resume a named queue."""

    async def handle(request: Request) -> Response:
        form = await request.form()
        name = str(form.get("name", ""))
        action = request.path_params["action"]
        if action not in ("pause", "resume"):
            return d.render(request, "error.html", 400, message=f"unknown action {action!r}")
        target = await d.target()
        try:
            if action == "pause":
                changed = await d.admin.pause_queue(target, name)
            else:
                changed = await d.admin.resume_queue(target, name)
        except JobSpecError as exc:
            return d.render(request, "error.html", 400, message=str(exc))
        state = "paused" if action == "pause" else "resumed"
        return _back(request, "/queues", f"{name}: {state}" if changed else f"{name}: unchanged")

    return handle


def _blank(text: str) -> bool:
    return not text.strip() or text.strip().lower() == "none"


def _concurrency(text: str) -> int | None:
    """A form's concurrency ("3"); empty or "none": no cap."""
    if _blank(text):
        return None
    try:
        return int(text)
    except ValueError:
        raise JobSpecError("concurrency", f"{text!r} is not a whole number") from None


def _rate(text: str) -> Rate | None:
    """A form's rate ("20/1": 20 starts a second); empty or "none": no cap."""
    if _blank(text):
        return None
    count, _, per = text.strip().partition("/")
    try:
        return Rate(int(count), float(per or "1"))
    except ValueError:
        raise JobSpecError("rate", f"{text!r} is not COUNT/SECONDS, e.g. 20/1") from None


def limit_action(d: Dashboard) -> Handler:
    """Set a limit's numbers (they hold until reset) or reset them to the declared ones."""

    async def handle(request: Request) -> Response:
        form = await request.form()
        name = str(form.get("name", ""))
        action = request.path_params["action"]
        target = await d.target()
        try:
            if action == "set":
                concurrency = _concurrency(str(form.get("concurrency", "")))
                rate = _rate(str(form.get("rate", "")))
                await d.admin.set_limit(target, name, concurrency=concurrency, rate=rate)
                return _back(request, "/limits", f"{name}: set")
            if action == "reset":
                found = await d.admin.reset_limit(target, name)
                return _back(request, "/limits", f"{name}: " + ("reset" if found else "unknown"))
        except JobSpecError as exc:
            return d.render(request, "error.html", 400, message=str(exc))
        return d.render(request, "error.html", 400, message=f"unknown action {action!r}")

    return handle


ACTIONS: Final[list[tuple[str, Callable[[Dashboard], Handler]]]] = [
    ("/jobs/bulk", bulk),
    ("/jobs/{job_id:int}/{action}", job_action),
    ("/queues/{action}", queue_action),
    ("/limits/{action}", limit_action),
]
