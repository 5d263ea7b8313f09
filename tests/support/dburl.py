"""Connection strings for test databases, as URIs both psycopg and node-postgres accept."""

from __future__ import annotations

from urllib.parse import quote, urlencode

from psycopg.conninfo import conninfo_to_dict


def with_dbname(conninfo: str, dbname: str) -> str:
    """``conninfo`` (URI or key=value) pointed at ``dbname``, as a ``postgresql://`` URI."""
    params = {k: str(v) for k, v in conninfo_to_dict(conninfo).items() if v is not None}
    params.pop("dbname", None)
    user = params.pop("user", "")
    password = params.pop("password", "")
    host = params.pop("host", "")
    port = params.pop("port", "")
    auth = quote(user, safe="")
    if password:
        auth += ":" + quote(password, safe="")
    query: dict[str, str] = dict(params)
    if host.startswith("/"):
        # Unix socket directory: goes in the query string; the authority has no host.
        query["host"] = host
        if port:
            query["port"] = port
        netloc = f"{auth}@" if auth else ""
    else:
        netloc = (f"{auth}@" if auth else "") + host + (f":{port}" if port else "")
    suffix = ("?" + urlencode(query)) if query else ""
    return f"postgresql://{netloc}/{quote(dbname, safe='')}{suffix}"
