"""``zodworker dashboard``: serve the web dashboard (:mod:`zodworker.web`) with uvicorn.

It binds to 127.0.0.1 unless told otherwise; any other address needs credentials
(``--token`` / ``ZODWORKER_DASHBOARD_TOKEN``, or ``--basic-auth USER:PASSWORD`` /
``ZODWORKER_DASHBOARD_BASIC_AUTH``), so a dashboard that can change jobs is never open to
the network by accident.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
from typing import Any

from ..cron import CronItem
from ..errors import ConfigError

__all__ = ["add_dashboard_command", "dashboard_auth", "serve_dashboard"]


def add_dashboard_command(parser: argparse.ArgumentParser) -> None:
    """The dashboard's own flags (the connection and schema come from the settings)."""
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port to bind (8080)")
    parser.add_argument("--read-only", action="store_true", help="hide and refuse every action")
    parser.add_argument(
        "--token", help="bearer token every request needs (or ZODWORKER_DASHBOARD_TOKEN)"
    )
    parser.add_argument(
        "--basic-auth",
        metavar="USER:PASSWORD",
        help="HTTP basic credentials (or ZODWORKER_DASHBOARD_BASIC_AUTH)",
    )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def dashboard_auth(args: argparse.Namespace) -> dict[str, Any]:
    """The credentials from flags or environment; refuses a non-loopback bind without any."""
    token = args.token or os.environ.get("ZODWORKER_DASHBOARD_TOKEN") or None
    basic = args.basic_auth or os.environ.get("ZODWORKER_DASHBOARD_BASIC_AUTH") or None
    pair = None
    if basic is not None:
        user, sep, password = basic.partition(":")
        if not sep or not user or not password:
            raise ConfigError("basic_auth", "must be USER:PASSWORD, both non-empty")
        pair = (user, password)
    if not _is_loopback(args.host) and token is None and pair is None:
        raise ConfigError(
            "host",
            f"{args.host!r} is not a loopback address: give --token or --basic-auth (or "
            "ZODWORKER_DASHBOARD_TOKEN / ZODWORKER_DASHBOARD_BASIC_AUTH) so the dashboard is "
            "not open to anyone who can reach it",
        )
    return {"token": token, "basic_auth": pair}


async def serve_dashboard(
    args: argparse.Namespace, url: str, schema: str, crontab: list[CronItem]
) -> int:
    """Serve until interrupted (``crontab``: items whose next runs the cron page shows);
    return the exit code."""
    try:
        import uvicorn

        from ..web import create_app
    except ImportError as exc:  # pragma: no cover - depends on the extra
        raise ConfigError(
            "dashboard", f"needs the web extra: pip install 'zodworker[web]' ({exc})"
        ) from None
    auth = dashboard_auth(args)
    app = create_app(url, schema=schema, read_only=args.read_only, crontab=crontab, **auth)
    config = uvicorn.Config(app, host=args.host, port=args.port, log_level="warning")
    server = uvicorn.Server(config)
    print(f"zodworker dashboard on http://{args.host}:{args.port}/ (schema {schema!r})")
    await server.serve()
    return 0
