"""Regenerate tests/compat/graphile_worker_0_18_schema.json from the REAL graphile-worker.

Usage (from the repository root)::

    python tests/support/regen_schema_snapshot.py [--database-url URL] [--output PATH]

It creates a scratch database through the admin connection (``--database-url``, default
``$TEST_DATABASE_URL`` or ``postgresql://postgres@127.0.0.1:5432/postgres``), lets
graphile-worker 0.18 (``--schema-only``) install its schema ``graphile_worker`` there, snapshots
it with ``tests.support.schema_snapshot.snapshot`` and drops the database again.

The file holds the bare snapshot (compare it with ``snapshot(conn, schema)`` directly). It
was generated on PostgreSQL 15; a snapshot taken on PostgreSQL 18 is identical (the NOT NULL
constraints PostgreSQL 18 adds to pg_constraint are excluded by ``snapshot``). Should a future
server version deparse something differently, compare against a live graphile-worker-migrated
schema on the server under test instead.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
if __name__ == "__main__" and str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import psycopg  # noqa: E402
from psycopg import sql  # noqa: E402
from psycopg.conninfo import make_conninfo  # noqa: E402

from tests.support.graphile import GRAPHILE_WORKER_VERSION, graphile_worker  # noqa: E402
from tests.support.schema_snapshot import snapshot  # noqa: E402

REFERENCE_PATH = REPO_ROOT / "tests" / "compat" / "graphile_worker_0_18_schema.json"
REFERENCE_SCHEMA = "graphile_worker"
DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


@contextlib.contextmanager
def scratch_database(admin_conninfo: str, prefix: str = "zodworker_regen") -> Iterator[str]:
    """Create a uniquely named database, yield its conninfo, drop it afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_conninfo, autocommit=True) as admin:
        admin.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    try:
        yield make_conninfo(admin_conninfo, dbname=name)
    finally:
        with psycopg.connect(admin_conninfo, autocommit=True) as admin:
            admin.execute(
                sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
            )


def generate(admin_conninfo: str) -> tuple[dict[str, Any], int]:
    """Snapshot a schema installed by the real graphile-worker; also return the server version."""
    gw = graphile_worker()
    with scratch_database(admin_conninfo) as conninfo:
        gw.schema_only(conninfo, REFERENCE_SCHEMA)
        with psycopg.connect(conninfo, autocommit=True) as conn:
            return snapshot(conn, REFERENCE_SCHEMA), conn.info.server_version


def dumps(snap: dict[str, Any]) -> str:
    return json.dumps(snap, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def load_reference(path: Path = REFERENCE_PATH) -> dict[str, Any]:
    """The checked-in snapshot."""
    data: dict[str, Any] = json.loads(path.read_text("utf-8"))
    return data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--database-url",
        default=os.environ.get("TEST_DATABASE_URL", DEFAULT_ADMIN_URL),
        help="admin connection used to create/drop a scratch database",
    )
    parser.add_argument("--output", type=Path, default=REFERENCE_PATH)
    args = parser.parse_args(argv)
    snap, server_version = generate(args.database_url)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(dumps(snap), "utf-8")
    print(
        f"wrote {args.output} (graphile-worker {GRAPHILE_WORKER_VERSION}, "
        f"PostgreSQL server_version_num {server_version})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
