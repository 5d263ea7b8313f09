"""Which PostgreSQL server the test suite runs against.

Order of preference:

1. ``$TEST_DATABASE_URL`` -- any server you point it at (must be a superuser connection).
2. A throw-away ``postgres:16`` container via testcontainers, when a Docker engine answers.
3. The zero-config embedded server (:mod:`zodworker.embedded`) in a test-only data directory:
   ``$ZODWORKER_TEST_EMBEDDED_DIR``, else ``default_data_dir().parent / "pg-tests"``
   (e.g. ``~/.local/share/zodworker/pg-tests``, or ``/var/lib/zodworker/pg-tests`` as root).

The choice and the server are made once per process; tests create their own databases on it.
"""

from __future__ import annotations

import atexit
import functools
import gc
import os
import pathlib
import warnings
from typing import Any, Literal
from urllib.parse import quote

__all__ = ["admin_conninfo", "server_kind"]

ServerKind = Literal["env", "testcontainers", "embedded"]

ENV_URL = "TEST_DATABASE_URL"
ENV_EMBEDDED_DIR = "ZODWORKER_TEST_EMBEDDED_DIR"
CONTAINER_IMAGE = "postgres:16"

_actual_kind: ServerKind | None = None


@functools.cache
def _docker_answers() -> bool:
    """Cheap probe: is a Docker engine reachable? Any failure at all means no."""
    host = os.environ.get("DOCKER_HOST", "")
    if not host and os.name == "posix" and not os.path.exists("/var/run/docker.sock"):
        return False  # what docker.from_env() would try; skip the slow failing round trip
    with warnings.catch_warnings():
        # a failed connection attempt in docker-py leaves an unclosed socket behind
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            import docker

            client = docker.from_env(timeout=5)
            try:
                return bool(client.ping())
            finally:
                client.close()
        except Exception:
            return False
        finally:
            gc.collect()  # finalise that socket while its ResourceWarning is ignored


def _planned_kind() -> ServerKind:
    if os.environ.get(ENV_URL):
        return "env"
    if _docker_answers():
        return "testcontainers"
    return "embedded"


def embedded_test_dir() -> pathlib.Path:
    """The data directory of the embedded server used by the tests."""
    override = os.environ.get(ENV_EMBEDDED_DIR)
    if override:
        return pathlib.Path(override).expanduser().absolute()
    from zodworker.embedded import default_data_dir

    return default_data_dir().parent / "pg-tests"


def _postgres_container() -> Any:
    try:
        from testcontainers.community.postgres import PostgresContainer
    except ImportError:  # testcontainers < 4.15
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            from testcontainers.postgres import PostgresContainer
    return PostgresContainer


def _start_container() -> str:
    container = _postgres_container()(
        CONTAINER_IMAGE, username="postgres", password="postgres", dbname="postgres"
    )
    container.start()
    atexit.register(container.stop)
    host = str(container.get_container_host_ip())
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    port = int(container.get_exposed_port(5432))
    user = quote(container.username, safe="")
    password = quote(container.password, safe="")
    return f"postgresql://{user}:{password}@{host}:{port}/postgres"


def _start_embedded() -> str:
    from zodworker.embedded import start_embedded

    data_dir = embedded_test_dir()
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    return start_embedded(data_dir)


@functools.cache
def admin_conninfo() -> str:
    """A superuser connection URI to a maintenance database on the server the tests use.

    ``$TEST_DATABASE_URL`` if set; else a testcontainers ``postgres:16`` (started once per
    process, stopped at interpreter exit) when a Docker engine answers; else the embedded
    server in :func:`embedded_test_dir`.  If Docker answers but the container cannot be started
    (no image, no network), falls back to the embedded server with a warning.
    """
    global _actual_kind
    kind = _planned_kind()
    if kind == "env":
        _actual_kind = "env"
        return os.environ[ENV_URL]
    if kind == "testcontainers":
        try:
            url = _start_container()
        except Exception as exc:
            warnings.warn(
                f"Docker answers but the {CONTAINER_IMAGE} container could not be started "
                f"({type(exc).__name__}: {exc}); using the embedded PostgreSQL instead",
                RuntimeWarning,
                stacklevel=2,
            )
        else:
            _actual_kind = "testcontainers"
            return url
    url = _start_embedded()
    _actual_kind = "embedded"
    return url


def server_kind() -> str:
    """``"env"``, ``"testcontainers"`` or ``"embedded"``, for the pytest header.

    The kind actually in use once :func:`admin_conninfo` has run; before that, the kind it will
    try (without starting anything).
    """
    return _actual_kind or _planned_kind()
