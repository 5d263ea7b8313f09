"""The dashboard's ASGI app: its routes, each behind :meth:`Dashboard.guard`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from starlette.applications import Starlette
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ..cron import CronItem, read_crontab
from ..db.rows import AsyncTarget
from ..job import DEFAULT_SCHEMA
from . import actions, live, pages
from .dashboard import HERE, Dashboard

__all__ = ["create_app"]


def create_app(
    connection: str | AsyncTarget | Callable[[], AsyncTarget],
    *,
    schema: str = DEFAULT_SCHEMA,
    read_only: bool = False,
    token: str | None = None,
    basic_auth: tuple[str, str] | None = None,
    title: str = "zodworker",
    crontab: Sequence[CronItem] | str | Path | None = None,
) -> Starlette:
    """The dashboard as an ASGI app for ``connection`` (a connection URL, an async psycopg
    pool of yours, or a function returning one, e.g. a pool your app opens in its lifespan)
    and ``schema``. ``read_only`` hides and refuses every action; ``token``
    and/or ``basic_auth`` (username, password) are required of every request when given.
    ``crontab`` (cron items, or a crontab file) adds each item's next runs to the cron
    page, which otherwise lists what the database knows."""
    dashboard = Dashboard(
        connection,
        schema=schema,
        read_only=read_only,
        token=token,
        basic_auth=basic_auth,
        title=title,
        crontab=read_crontab(Path(crontab)) if isinstance(crontab, str | Path) else crontab or (),
    )
    guard = dashboard.guard
    routes = [
        *(Route(path, guard(page(dashboard)), methods=["GET"]) for path, page in pages.PAGES),
        *(
            Route(path, guard(action(dashboard), action=True), methods=["POST"])
            for path, action in actions.ACTIONS
        ),
        *(Route(path, guard(stream(dashboard)), methods=["GET"]) for path, stream in live.STREAMS),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await dashboard.close()

    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.dashboard = dashboard
    return app
