"""The command line's arguments: graphile-worker's flags, accepted before or after the
command (``zodworker -j 2 run`` and ``zodworker run -j 2`` mean the same)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..config import MetricsOptions, WorkerOptions
from ..job import DEFAULT_SCHEMA

__all__ = ["build_parser", "metrics_options", "worker_options"]


def _add_common(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    """The connection and worker options. Added to the main parser (with defaults) and to
    every command (without defaults, so either place works)."""

    def default(value: object) -> object:
        return argparse.SUPPRESS if suppress else value

    conn = parser.add_argument_group("connection")
    conn.add_argument("-c", "--connection", default=default(None), help="PostgreSQL URL")
    conn.add_argument("-s", "--schema", default=default(DEFAULT_SCHEMA), help="schema name")
    conn.add_argument("-v", "--verbose", action="store_true", default=default(False))
    conn.add_argument(
        "--log-format", choices=["text", "json"], default=default("text"), help="log lines"
    )
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
    worker.add_argument(
        "--no-prepared-statements",
        action="store_true",
        default=default(False),
        help="for PgBouncer in transaction pooling mode",
    )
    worker.add_argument(
        "--listen-connection",
        default=default(None),
        help="direct or session-pooled URL for LISTEN (when -c goes through PgBouncer)",
    )
    worker.add_argument(
        "--poll-only",
        action="store_true",
        default=default(False),
        help="no LISTEN: find new jobs by polling",
    )
    worker.add_argument("--local-queue-size", type=int, default=default(-1), help="batch size")
    worker.add_argument("--tasks", type=Path, default=default(None), help="task directory")
    worker.add_argument(
        "--watch", action="store_true", default=default(False), help="reload changed tasks"
    )
    worker.add_argument("--app", default=default(None), help="MODULE:OBJECT task mapping")
    worker.add_argument(
        "--crontab", type=Path, default=default(None), help="crontab file (default ./crontab)"
    )
    worker.add_argument(
        "--no-log-jobs", action="store_true", default=default(False), help="no line per success"
    )
    worker.add_argument(
        "--metrics-port", type=int, default=default(None), help="serve /metrics, /healthz, /readyz"
    )
    worker.add_argument("--metrics-host", default=default("0.0.0.0"), help="(0.0.0.0)")


def build_parser() -> argparse.ArgumentParser:
    """The parser of every command."""
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
    _add_admin(commands)
    return parser


def _connection_only(parser: argparse.ArgumentParser) -> None:
    conn = parser.add_argument_group("connection")
    conn.add_argument("-c", "--connection", default=argparse.SUPPRESS, help="PostgreSQL URL")
    conn.add_argument("-s", "--schema", default=argparse.SUPPRESS, help="schema name")
    conn.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")


def _add_filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", help="only jobs of this task identifier")
    parser.add_argument("--queue", help="only jobs of this named queue")
    parser.add_argument(
        "--state",
        choices=["ready", "scheduled", "running", "retrying", "failed"],
        help="only jobs in this state (failed: out of attempts, cancelled included)",
    )
    parser.add_argument("--key", help="only the job with this job key")
    parser.add_argument("--flag", help="only jobs carrying this flag")


def _add_admin(commands: Any) -> None:
    """``jobs``, ``queues``, ``stats``, ``workers`` and ``unlock`` (see zodworker.cli.admin)."""
    jobs = commands.add_parser("jobs", help="list, show, retry, delete, reschedule, cancel jobs")
    actions = jobs.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="jobs, newest first, a page at a time")
    _connection_only(listing)
    _add_filters(listing)
    listing.add_argument("--limit", type=int, default=50, help="jobs per page (50)")
    listing.add_argument("--after", type=int, help="the cursor printed under the last page")
    listing.add_argument("--oldest", action="store_true", help="oldest first")
    show = actions.add_parser("show", help="one job, with its payload and last error")
    _connection_only(show)
    show.add_argument("id", type=int)
    for name, text in [
        ("retry", "run the jobs now with fresh attempts"),
        ("delete", "delete the jobs"),
        ("reschedule", "move the jobs to --run-at"),
    ]:
        bulk = actions.add_parser(name, help=f"{text} (by id or by filters; --yes to act)")
        _connection_only(bulk)
        _add_filters(bulk)
        bulk.add_argument("ids", type=int, nargs="*", help="job ids (else the filters select)")
        bulk.add_argument("--all", action="store_true", help="every job, when no filter")
        bulk.add_argument("--yes", action="store_true", help="act (else only count)")
        if name == "reschedule":
            bulk.add_argument("--run-at", required=True, help="ISO 8601 time with an offset")
    cancel = actions.add_parser("cancel", help="cancel a job; a running one is aborted")
    _connection_only(cancel)
    cancel.add_argument("id", type=int)
    queues = commands.add_parser("queues", help="named queues: list, pause, resume")
    _connection_only(queues)
    queues.add_argument("action", choices=["list", "pause", "resume"])
    queues.add_argument("name", nargs="?", help="the queue to pause or resume")
    stats = commands.add_parser("stats", help="jobs by task, queue and state; oldest waits")
    _connection_only(stats)
    workers = commands.add_parser("workers", help="live zodworker pools (`workers list`)")
    _connection_only(workers)
    workers.add_argument("action", choices=["list"])
    unlock = commands.add_parser("unlock", help="release what the given worker ids hold")
    _connection_only(unlock)
    unlock.add_argument("workers", nargs="+", help="pool or graphile-worker ids")


def worker_options(args: argparse.Namespace, url: str) -> WorkerOptions:
    """The worker options the flags ask for."""
    return WorkerOptions(
        connection=url,
        schema=args.schema,
        concurrency=args.jobs,
        max_pool_size=args.max_pool_size,
        poll_interval=args.poll_interval / 1000,
        use_prepared_statements=not args.no_prepared_statements,
        listen_connection=args.listen_connection,
        poll_only=args.poll_only,
        local_queue_size=args.local_queue_size,
        log_jobs=not args.no_log_jobs,
        handle_signals=True,
    )


def metrics_options(args: argparse.Namespace) -> MetricsOptions | None:
    """The metrics endpoint the flags ask for (None: no --metrics-port)."""
    if args.metrics_port is None:
        return None
    return MetricsOptions(port=args.metrics_port, host=args.metrics_host)
