"""The dashboard's live parts: server-sent events carrying re-rendered fragments.

An open overview or jobs page subscribes (htmx's SSE extension) and swaps in a fresh
fragment each :data:`INTERVAL`; the stream ends when the browser goes away.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from ..errors import JobSpecError
from .dashboard import Dashboard, Handler
from .pages import jobs_values, overview_context

__all__ = ["INTERVAL", "STREAMS", "sse_event"]

INTERVAL: Final = 1.0
"""Seconds between two updates of a live part."""


def sse_event(event: str, html: str) -> str:
    """One server-sent event whose data is ``html`` (one ``data:`` line per line)."""
    lines = "".join(f"data: {line}\n" for line in html.splitlines() or [""])
    return f"event: {event}\n{lines}\n"


def _stream(
    d: Dashboard,
    event: str,
    template: str,
    values: Callable[[Request], Awaitable[dict[str, Any]]],
) -> Handler:
    async def handle(request: Request) -> Response:
        async def events() -> AsyncIterator[str]:
            while not await request.is_disconnected():
                try:
                    fragment = d.html(request, template, **await values(request))
                except JobSpecError:  # a bad filter: the page itself says so
                    return
                yield sse_event(event, fragment)
                await asyncio.sleep(INTERVAL)

        headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        return StreamingResponse(events(), media_type="text/event-stream", headers=headers)

    return handle


def overview(d: Dashboard) -> Handler:
    return _stream(d, "counts", "_counts.html", lambda request: overview_context(d))


def jobs(d: Dashboard) -> Handler:
    return _stream(d, "jobs", "_jobs_table.html", lambda request: jobs_values(d, request))


STREAMS: Final[list[tuple[str, Callable[[Dashboard], Handler]]]] = [
    ("/live/overview", overview),
    ("/live/jobs", jobs),
]
