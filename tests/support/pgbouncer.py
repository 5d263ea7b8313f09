"""A real PgBouncer (Debian's ``pgbouncer`` package) in front of the test server.

Started per test with a generated configuration (``auth_type = any``, the given pool mode,
a small server pool so that clients share server connections), listening on a free port of
127.0.0.1. Run as root, PgBouncer refuses to start, so it is started as the ``postgres`` (or
``nobody``) user. It reaches the test server over TCP; a server that only has a Unix socket
(the embedded one) is not supported and the tests skip with a message.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest

__all__ = ["PgBouncer", "pgbouncer_binary"]

Mode = Literal["session", "transaction"]


def pgbouncer_binary() -> str:
    """The pgbouncer executable, or skip the test saying how to get it."""
    found = shutil.which("pgbouncer") or (
        "/usr/sbin/pgbouncer" if Path("/usr/sbin/pgbouncer").exists() else None
    )
    if found is None:
        pytest.skip("pgbouncer is not installed (apt-get install pgbouncer; .ci/run does it)")
    return found


def _tcp_target(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    host = query.get("host") or parts.hostname or ""
    if not host or host.startswith("/"):
        pytest.skip("the test server has no TCP address for PgBouncer (embedded server)")
    return host, int(query.get("port") or parts.port or 5432)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _run_as() -> list[str]:
    if os.geteuid() != 0:
        return []
    for user in ("postgres", "nobody"):
        try:
            pwd.getpwnam(user)
        except KeyError:
            continue
        return ["-u", user]
    pytest.skip("running as root without a postgres or nobody user to run PgBouncer as")


class PgBouncer:
    """One PgBouncer process in ``mode`` in front of the server of ``target_url``."""

    def __init__(self, target_url: str, mode: Mode, *, server_pool_size: int = 2) -> None:
        binary = pgbouncer_binary()
        host, port = _tcp_target(target_url)
        user = urlsplit(target_url).username or "postgres"
        self.mode = mode
        self.port = _free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="zw-pgbouncer-"))
        self.dir.chmod(0o777)
        config = self.dir / "pgbouncer.ini"
        config.write_text(
            "[databases]\n"
            f"* = host={host} port={port} user={user}\n"  # auth_type any needs a user
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {self.port}\n"
            "unix_socket_dir =\n"
            "auth_type = any\n"
            f"pool_mode = {mode}\n"
            f"default_pool_size = {server_pool_size}\n"
            "max_client_conn = 500\n"
            "ignore_startup_parameters = extra_float_digits,options\n"
            f"logfile = {self.dir / 'pgbouncer.log'}\n"
            f"pidfile = {self.dir / 'pgbouncer.pid'}\n"
        )
        config.chmod(0o644)
        self._proc = subprocess.Popen(
            [binary, *_run_as(), str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"pgbouncer exited at start:\n{self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"pgbouncer did not listen within 20s:\n{self.log()}")

    def log(self) -> str:
        try:
            return (self.dir / "pgbouncer.log").read_text(errors="replace")
        except OSError:
            return "(no log)"

    def url(self, original: str) -> str:
        """``original`` (same user and database) through this PgBouncer."""
        parts = urlsplit(original)
        query = [(k, v) for k, v in parse_qsl(parts.query) if k not in ("host", "port")]
        user = f"{parts.username}@" if parts.username else ""
        netloc = f"{user}127.0.0.1:{self.port}"
        return urlunsplit((parts.scheme, netloc, parts.path, urlencode(query), ""))

    def close(self) -> None:
        self._proc.terminate()
        try:
            self._proc.wait(10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)
