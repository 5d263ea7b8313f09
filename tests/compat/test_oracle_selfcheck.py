"""Self-check of the graphile-worker oracle helpers (tests/support/graphile.py and
tests/support/schema_snapshot.py) against the real graphile-worker 0.18."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from tests.support.graphile import GraphileWorker, ensure_installed, graphile_worker, node_conninfo
from tests.support.regen_schema_snapshot import REFERENCE_SCHEMA, load_reference
from tests.support.schema_snapshot import SCHEMA_PLACEHOLDER, diff, snapshot
from tests.support.server import admin_conninfo

# A second schema name that needs quoting, to prove snapshots are schema-name independent.
OTHER_SCHEMA = "Oracle-Check"

pytestmark = pytest.mark.node


@pytest.fixture(scope="module")
def gw() -> GraphileWorker:
    return graphile_worker()


@pytest.fixture(scope="module")
def database(gw: GraphileWorker) -> Iterator[str]:
    """A fresh database with graphile-worker's schema installed under two different names."""
    name = f"zodworker_oracle_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_conninfo(), autocommit=True) as admin:
        admin.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    try:
        conninfo = make_conninfo(admin_conninfo(), dbname=name)
        for schema in (REFERENCE_SCHEMA, OTHER_SCHEMA):
            proc = gw.schema_only(conninfo, schema)
            assert "Schema updated" in proc.stdout
        yield conninfo
    finally:
        with psycopg.connect(admin_conninfo(), autocommit=True) as admin:
            admin.execute(
                sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
            )


def test_snapshots_do_not_depend_on_schema_name(database: str) -> None:
    with psycopg.connect(database, autocommit=True) as conn:
        a = snapshot(conn, REFERENCE_SCHEMA)
        b = snapshot(conn, OTHER_SCHEMA)
    assert diff(a, b, labels=(REFERENCE_SCHEMA, OTHER_SCHEMA)) == []
    assert a == b
    # The placeholder really was substituted (the view and functions reference the schema).
    assert SCHEMA_PLACEHOLDER in json.dumps(a)
    assert REFERENCE_SCHEMA not in json.dumps(a)
    assert OTHER_SCHEMA not in json.dumps(b)
    # Sanity: the things graphile-worker 0.18 (schema revision 20) is known to create.
    assert [m["id"] for m in a["data"]["migrations"]] == list(range(1, 21))
    assert {"_private_jobs", "_private_tasks", "_private_job_queues", "migrations"} <= set(
        a["tables"]
    )
    assert "jobs" in a["views"]
    assert "job_spec" in a["types"]
    assert {f["name"] for f in a["functions"].values()} >= {"add_job", "add_jobs"}


def test_snapshot_matches_checked_in_reference(database: str) -> None:
    reference = load_reference()
    with psycopg.connect(database, autocommit=True) as conn:
        live = snapshot(conn, OTHER_SCHEMA)
        server_version = conn.info.server_version
    differences = diff(reference, live, labels=("reference", "live"))
    assert differences == [], (
        f"graphile-worker's schema on PostgreSQL {server_version} differs from the checked-in "
        "reference (regenerate with tests/support/regen_schema_snapshot.py if intended):\n"
        + "\n".join(differences)
    )
    assert reference == live


def test_quick_add_job_then_run_once(gw: GraphileWorker, database: str, tmp_path: Path) -> None:
    schema = OTHER_SCHEMA
    out_file = tmp_path / "received.jsonl"
    tasks_dir = tmp_path / "task_files"  # deliberately not named "tasks"
    tasks_dir.mkdir()
    # .mjs is ESM regardless of any package.json above tmp_path.
    (tasks_dir / "record_payload.mjs").write_text(
        'import { appendFileSync } from "node:fs";\n'
        "export default async (payload, helpers) => {\n"
        f"  appendFileSync({json.dumps(str(out_file))}, JSON.stringify(payload) + '\\n');\n"
        "};\n"
    )
    payload = {"greeting": "héllo ✓", "n": 42, "nested": {"list": [1, None, True]}}

    added = gw.node_script(
        'import { quickAddJob } from "graphile-worker";\n'
        "const [connectionString, schema, payload] = process.argv.slice(2);\n"
        "const job = await quickAddJob({ connectionString, schema }, "
        '"record_payload", JSON.parse(payload));\n'
        "console.log(JSON.stringify({ id: String(job.id), task: job.task_identifier }));\n",
        node_conninfo(database),
        schema,
        json.dumps(payload),
    )
    job = json.loads(added.stdout.strip().splitlines()[-1])
    assert job["task"] == "record_payload"

    table = sql.Identifier(schema, "_private_jobs")
    with psycopg.connect(database, autocommit=True) as conn:
        rows = conn.execute(sql.SQL("select id, payload from {}").format(table)).fetchall()
        assert rows == [(int(job["id"]), payload)]

    proc = gw.run_once(database, schema, tasks_dir)
    assert "record_payload" in proc.stdout + proc.stderr

    received = [json.loads(line) for line in out_file.read_text().splitlines()]
    assert received == [payload]
    with psycopg.connect(database, autocommit=True) as conn:
        remaining = conn.execute(sql.SQL("select count(*) from {}").format(table)).fetchone()
        assert remaining == (0,)


def test_unix_socket_conninfo(gw: GraphileWorker, database: str) -> None:
    """node-postgres accepts libpq's socket URI form ``postgresql://user@/db?host=/dir``."""
    params = conninfo_to_dict(database)
    host = str(params.get("host") or "")
    socket_dir = host if host.startswith("/") else "/var/run/postgresql"
    port = params.get("port") or "5432"
    if not Path(socket_dir, f".s.PGSQL.{port}").exists():
        pytest.skip(f"no PostgreSQL socket in {socket_dir} for port {port}")
    uri = f"postgresql://{params.get('user') or 'postgres'}@/{params['dbname']}?host={socket_dir}"
    if port != "5432":
        uri += f"&port={port}"
    assert node_conninfo(uri) == uri  # passed through unchanged
    proc = gw.node_script(
        'import pg from "pg";\n'
        "const client = new pg.Client({ connectionString: process.argv[2] });\n"
        "await client.connect();\n"
        "const { rows } = await client.query("
        '"select current_database() as db, inet_server_addr() as addr");\n'
        "await client.end();\n"
        "console.log(JSON.stringify(rows[0]));\n",
        uri,
    )
    # addr is NULL for a Unix-domain-socket connection.
    assert json.loads(proc.stdout) == {"db": params["dbname"], "addr": None}
    # And the CLI (migrations are already applied: a no-op) accepts it as well.
    assert "Schema updated" in gw.schema_only(uri, REFERENCE_SCHEMA).stdout


def test_node_conninfo_converts_libpq_key_value() -> None:
    assert node_conninfo("host=/tmp/sock dbname=x user=postgres port=5433") == (
        "postgresql://postgres@/x?host=/tmp/sock&port=5433"
    )
    assert node_conninfo("host=127.0.0.1 port=5432 user=u password='p w' dbname=db") == (
        "postgresql://u:p%20w@127.0.0.1:5432/db"
    )
    uri = "postgresql://postgres@/db?host=/some/socket/dir"
    assert node_conninfo(uri) == uri


def test_unreachable_registry_skips(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gw: GraphileWorker
) -> None:
    """A fresh cache dir + an unreachable registry must skip the test with a clear message."""
    # Nothing listens on port 1; npm's cache is keyed by registry URL, so it cannot help.
    monkeypatch.setenv("npm_config_registry", "http://127.0.0.1:1/")
    monkeypatch.setenv("npm_config_fetch_retries", "0")
    with pytest.raises(pytest.skip.Exception, match="graphile-worker from npm unavailable"):
        ensure_installed(tmp_path / "cache")
