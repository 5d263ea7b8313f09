"""The operations endpoint: ``/metrics``, ``/healthz`` and ``/readyz`` over HTTP.

It is the standard library's threading HTTP server on a daemon thread, so a scrape never
waits for the event loop and a blocked loop is *seen* rather than hiding the endpoint:

* ``/metrics``: the Prometheus registry (text or OpenMetrics, as the scraper asks); 404
  when only health is served.
* ``/healthz`` (liveness): 200 while the process's event loop answers within 5 s; 503 when
  it is blocked (a handler hogging the loop), which is what a liveness probe should restart.
* ``/readyz`` (readiness): 200 when the database answers a query within 2 s, the LISTEN
  connection is up (unless polling only) and the pool runs under a current lease; else 503.
  The body is JSON naming each check and what failed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import TimeoutError as FutureTimeout
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["Checks", "OpsServer"]

Checks = Callable[[], Awaitable[dict[str, str]]]
"""Readiness checks run on the event loop: check name -> "ok" or what is wrong."""
Exposition = Callable[[str | None], tuple[bytes, str]]

_LIVENESS_TIMEOUT = 5.0
_READINESS_TIMEOUT = 5.0


class OpsServer:
    """Serves the endpoints on ``host:port`` (port 0: any free port, see :attr:`port`)."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        loop: asyncio.AbstractEventLoop,
        readiness: Checks,
        metrics: Exposition | None,
        logger: logging.Logger,
    ) -> None:
        self._loop = loop
        self._readiness = readiness
        self._metrics = metrics
        self._logger = logger
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.answer(self)

            def log_message(self, format: str, *args: Any) -> None:
                return  # scrapes every few seconds would drown the log

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="zodworker-ops-http", daemon=True
        )

    @property
    def port(self) -> int:
        """The port listened on."""
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        """Stop serving and release the port."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    # ------------------------------------------------------------------ requests

    def answer(self, request: BaseHTTPRequestHandler) -> None:
        path = request.path.split("?", 1)[0]
        try:
            if path == "/metrics" and self._metrics is not None:
                body, content_type = self._metrics(request.headers.get("Accept"))
                _send(request, 200, body, content_type)
            elif path == "/healthz":
                alive = self._on_loop(_noop, _LIVENESS_TIMEOUT) is not None
                status: dict[str, object] = {"alive": alive}
                if not alive:
                    status["reason"] = f"event loop did not answer within {_LIVENESS_TIMEOUT}s"
                _send_json(request, 200 if alive else 503, status)
            elif path == "/readyz":
                checks = self._on_loop(self._readiness, _READINESS_TIMEOUT)
                if checks is None:
                    checks = {"event_loop": f"did not answer within {_READINESS_TIMEOUT}s"}
                ready = all(value == "ok" for value in checks.values())
                _send_json(request, 200 if ready else 503, {"ready": ready, "checks": checks})
            else:
                _send(request, 404, b"not found: try /metrics, /healthz or /readyz\n")
        except Exception:  # an endpoint must answer something, and never kill the server
            self._logger.exception("ops endpoint %s failed", path)
            _send(request, 500, b"internal error\n")

    def _on_loop(self, call: Callable[[], Awaitable[Any]], timeout: float) -> Any:
        """Await ``call()`` on the event loop; None if it does not finish in time."""
        if self._loop.is_closed():
            return None
        future = asyncio.run_coroutine_threadsafe(_as_coroutine(call), self._loop)
        try:
            return future.result(timeout)
        except FutureTimeout:
            future.cancel()
            return None


async def _noop() -> bool:
    return True


async def _as_coroutine(call: Callable[[], Awaitable[Any]]) -> Any:
    return await call()


def _send(
    request: BaseHTTPRequestHandler,
    status: int,
    body: bytes,
    content_type: str = "text/plain; charset=utf-8",
) -> None:
    request.send_response(status)
    request.send_header("Content-Type", content_type)
    request.send_header("Content-Length", str(len(body)))
    request.end_headers()
    request.wfile.write(body)


def _send_json(request: BaseHTTPRequestHandler, status: int, value: object) -> None:
    _send(request, status, json.dumps(value).encode() + b"\n", "application/json")
