"""A TCP proxy in front of PostgreSQL that a test can cut and heal, like a network would.

``cut()`` stops forwarding in both directions without closing anything: bytes sent by either
side are held (the peers see a silent network, not a reset), new connections are accepted
but not forwarded. ``heal()`` lets everything through again, late. ``reset()`` closes every
connection at once (a crashed middlebox). The proxy runs its own event loop in a thread, so
in-process pools, subprocess workers and synchronous test code can all go through it.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

__all__ = ["TcpProxy"]

Opener = Callable[[], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]


def _upstream(url: str) -> Opener:
    """How to open a connection to the server of ``url`` (TCP, or its Unix socket)."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    host = query.get("host") or parts.hostname or "localhost"
    port = int(query.get("port") or parts.port or 5432)
    if host.startswith("/"):
        path = str(Path(host) / f".s.PGSQL.{port}")
        return lambda: asyncio.open_unix_connection(path)
    return lambda: asyncio.open_connection(host, port)


class TcpProxy:
    """See the module docs. ``url(original)`` is the original URL through the proxy."""

    def __init__(self, target_url: str, *, host: str = "127.0.0.1") -> None:
        self.host = host
        self._open_upstream = _upstream(target_url)
        self._loop = asyncio.new_event_loop()
        self._flowing = asyncio.Event()
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.AbstractServer | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self.port = self._call(self._start())

    def _call(self, coro: Awaitable[Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(30)  # type: ignore[arg-type]

    async def _start(self) -> int:
        self._flowing.set()
        self._server = await asyncio.start_server(self._serve, self.host, 0)
        return int(self._server.sockets[0].getsockname()[1])

    def url(self, original: str) -> str:
        """``original`` with its host and port replaced by the proxy's."""
        parts = urlsplit(original)
        query = [(k, v) for k, v in parse_qsl(parts.query) if k not in ("host", "port")]
        user = f"{parts.username}@" if parts.username else ""
        netloc = f"{user}{self.host}:{self.port}"
        return urlunsplit((parts.scheme, netloc, parts.path, urlencode(query), ""))

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self._flowing.wait()
        try:
            up_reader, up_writer = await self._open_upstream()
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}
        await asyncio.gather(
            self._pump(reader, up_writer), self._pump(up_reader, writer), return_exceptions=True
        )
        for w in (writer, up_writer):
            self._writers.discard(w)
            w.close()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await self._flowing.wait()
            data = await reader.read(65536)
            if not data:
                break
            await self._flowing.wait()  # held while cut, delivered late when healed
            writer.write(data)
            await writer.drain()
        with contextlib.suppress(OSError):
            writer.write_eof()

    def cut(self) -> None:
        """Stop forwarding (both directions, every connection, new ones too)."""
        self._loop.call_soon_threadsafe(self._flowing.clear)

    def heal(self) -> None:
        """Forward again."""
        self._loop.call_soon_threadsafe(self._flowing.set)

    def reset(self) -> None:
        """Close every connection now."""

        async def close_all() -> None:
            for writer in list(self._writers):
                writer.transport.abort()

        self._call(close_all())

    def close(self) -> None:
        """Close the proxy and its connections; stop its thread."""

        async def shut() -> None:
            if self._server is not None:
                self._server.close()
            for writer in list(self._writers):
                writer.transport.abort()

        with contextlib.suppress(Exception):
            self._call(shut())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
