"""What every dashboard request needs: :class:`Dashboard` holds the database target, the
admin API, the templates and the security settings (authentication, CSRF, read-only).
:mod:`.pages` renders pages, :mod:`.actions` carries out POSTs, :mod:`.live` streams the
live parts, and :mod:`.app` puts them behind routes.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import secrets
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response

from ..admin import Admin
from ..cron import CronItem
from ..db.connect import Database
from ..db.rows import AsyncTarget
from ..errors import ConfigError, DatabaseError
from .throughput import Meter

__all__ = [
    "AUTH_COOKIE",
    "CSRF_COOKIE",
    "HERE",
    "NEEDS_ZODWORKER",
    "Dashboard",
    "Handler",
    "lacks_zodworker_tables",
    "when",
]

HERE = Path(__file__).parent
NEEDS_ZODWORKER = (
    "needs zodworker's tables in this schema (run `zodworker migrate`, or start a zodworker "
    "worker once); graphile-worker's own schema cannot answer it"
)
_UNDEFINED_TABLE = "42P01"


def lacks_zodworker_tables(exc: DatabaseError) -> bool:
    """Whether ``exc`` says a table is missing: zodworker's, on a schema only Node
    graphile-worker has used (graphile-worker's own are checked when the app connects)."""
    return exc.sqlstate == _UNDEFINED_TABLE


CSRF_COOKIE = "zw_csrf"
AUTH_COOKIE = "zw_token"
Handler = Callable[[Request], Awaitable[Response]]


class Dashboard:
    """What the dashboard's handlers share. Built by :func:`create_app`."""

    def __init__(
        self,
        connection: str | AsyncTarget | Callable[[], AsyncTarget],
        *,
        schema: str,
        read_only: bool,
        token: str | None,
        basic_auth: tuple[str, str] | None,
        title: str,
        crontab: Sequence[CronItem] = (),
    ) -> None:
        if token is not None and not token:
            raise ConfigError("token", "must not be empty; leave it unset for no token")
        if basic_auth is not None and (len(basic_auth) != 2 or not all(basic_auth)):
            raise ConfigError("basic_auth", "must be a (username, password) pair, both non-empty")
        self.schema = schema
        self.read_only = read_only
        self.title = title
        self.crontab = list(crontab)
        self.admin = Admin(schema)
        self.meter = Meter()
        self._token = token
        self._basic = basic_auth
        self._given = connection
        self._database: Database | None = None
        self._opening = asyncio.Lock()
        self.templates = Environment(
            loader=FileSystemLoader(HERE / "templates"),
            autoescape=select_autoescape(default=True, default_for_string=True),
        )
        self.templates.filters["when"] = when

    # ------------------------------------------------------------------ the database

    async def target(self) -> AsyncTarget:
        """The pool (or connection) statements run on; a URL is connected on first use, so
        the app works mounted inside another app, whose lifespan it does not get."""
        if callable(self._given):
            return self._given()
        if not isinstance(self._given, str):
            return self._given
        async with self._opening:
            if self._database is None:
                database = Database(self._given, schema=self.schema, max_size=4, name="dashboard")
                await database.open()
                self._database = database
            return self._database.connections

    async def close(self) -> None:
        """Close the pool opened for a URL (a pool passed in is the caller's)."""
        if self._database is not None:
            await self._database.close()
            self._database = None

    # ------------------------------------------------------------------ rendering

    def html(self, request: Request, name: str, *, csrf: str = "", **values: Any) -> str:
        """A template of ``templates/`` rendered for ``request`` (a page, or a live part)."""
        return self.templates.get_template(name).render(
            base=request.scope.get("root_path", ""),
            title=self.title,
            read_only=self.read_only,
            csrf=csrf,
            request=request,
            **values,
        )

    def render(self, request: Request, name: str, status: int = 200, **values: Any) -> Response:
        """A page from ``templates/``, with the CSRF token in its forms."""
        csrf = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(24)
        html = self.html(request, name, csrf=csrf, **values)
        response = Response(html, status_code=status, media_type="text/html")
        if request.cookies.get(CSRF_COOKIE) != csrf:
            response.set_cookie(CSRF_COOKIE, csrf, httponly=True, samesite="strict")
        return response

    # ------------------------------------------------------------------ security

    def authorized(self, request: Request) -> bool:
        """Whether the request carries the configured credentials (any, when none are)."""
        if self._token is None and self._basic is None:
            return True
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        if self._token is not None:
            for given in (value if scheme.lower() == "bearer" else None,
                          request.cookies.get(AUTH_COOKIE)):  # fmt: skip
                if given and hmac.compare_digest(given.encode(), self._token.encode()):
                    return True
        if self._basic is not None and scheme.lower() == "basic":
            try:
                user, _, password = base64.b64decode(value).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return False
            wanted_user, wanted_password = self._basic
            return hmac.compare_digest(user.encode(), wanted_user.encode()) & hmac.compare_digest(
                password.encode(), wanted_password.encode()
            )
        return False

    def login_with_query_token(self, request: Request) -> Response | None:
        """``?token=`` with the right token: keep it in a cookie and drop it from the URL."""
        given = request.query_params.get("token")
        if self._token is None or not given:
            return None
        if not hmac.compare_digest(given.encode(), self._token.encode()):
            return None
        query = urlencode([(k, v) for k, v in request.query_params.multi_items() if k != "token"])
        url = request.url.path + (f"?{query}" if query else "")
        response = RedirectResponse(url, status_code=303)
        response.set_cookie(AUTH_COOKIE, given, httponly=True, samesite="strict")
        return response

    def challenge(self) -> Response:
        headers = {"WWW-Authenticate": 'Basic realm="zodworker"'} if self._basic else {}
        return PlainTextResponse("authentication required", status_code=401, headers=headers)

    def guard(self, handler: Handler, *, action: bool = False) -> Handler:
        """``handler`` behind the auth check; an action also behind read-only and CSRF."""

        async def guarded(request: Request) -> Response:
            login = self.login_with_query_token(request)
            if login is not None:
                return login
            if not self.authorized(request):
                return self.challenge()
            if not action:
                return await handler(request)
            refused = await self._refuse_action(request)
            if refused is not None:
                return refused
            try:
                return await handler(request)
            except DatabaseError as exc:  # pausing, cancelling: zodworker's tables
                if not lacks_zodworker_tables(exc):
                    raise
                return self.render(request, "error.html", 409, message=f"This {NEEDS_ZODWORKER}")

        return guarded

    async def _refuse_action(self, request: Request) -> Response | None:
        if self.read_only:
            return PlainTextResponse("the dashboard is read-only", status_code=403)
        origin = request.headers.get("origin")
        # the host only: behind a TLS-terminating proxy the scheme seen here is http
        if origin is not None and urlsplit(origin).netloc != request.url.netloc:
            return PlainTextResponse("cross-origin request refused", status_code=403)
        cookie = request.cookies.get(CSRF_COOKIE, "")
        form = await request.form()
        given = str(form.get("csrf", "")) or request.headers.get("x-csrf-token", "")
        if not cookie or not hmac.compare_digest(cookie.encode(), given.encode()):
            return PlainTextResponse("missing or wrong CSRF token; reload the page", 403)
        return None


def when(value: datetime) -> str:
    """A timestamp as the dashboard shows it: UTC, to the second."""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
