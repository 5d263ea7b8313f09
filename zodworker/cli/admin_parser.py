"""The arguments of the admin commands: ``jobs``, ``queues``, ``stats``, ``limits``,
``workers`` and ``unlock`` (run by :mod:`zodworker.cli.admin`). Each command gets the
database and logging settings, ``--json``, and its own arguments."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from ..errors import JobSpecError
from ..limits import Rate

__all__ = ["add_admin_commands"]

STATES = ["ready", "scheduled", "running", "retrying", "failed"]

MakeCommand = Callable[[Any, str, str], argparse.ArgumentParser]
"""``make(subparsers, name, help)``: a command parser with the database and logging
settings and the common help epilog."""


def _parser(group: Any, name: str, text: str, make: MakeCommand) -> argparse.ArgumentParser:
    """A command with ``--json`` and the basic settings."""
    parser = make(group, name, text)
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")
    return parser


def _add_filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", help="only jobs of this task identifier")
    parser.add_argument("--queue", help="only jobs of this named queue")
    parser.add_argument(
        "--state",
        choices=STATES,
        help="only jobs in this state (failed: out of attempts, cancelled included)",
    )
    parser.add_argument("--key", help="only the job with this job key")
    parser.add_argument("--flag", help="only jobs carrying this flag")
    parser.add_argument("--text", help="only jobs whose payload contains this text (any case)")


def _cap(text: str) -> int | None:
    if text.lower() == "none":
        return None
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number or 'none'") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is below 0")
    return value


def _rate(text: str) -> Rate | None:
    if text.lower() == "none":
        return None
    count, _, per = text.partition("/")
    try:
        return Rate(int(count), float(per or "1"))
    except (ValueError, JobSpecError):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not COUNT/SECONDS (e.g. 20/1 for 20 a second) or 'none'"
        ) from None


def add_admin_commands(commands: Any, make: MakeCommand) -> None:
    """Add the admin commands to the ``commands`` subparsers."""
    jobs = commands.add_parser(
        "jobs", help="list, show, retry, delete, reschedule, cancel jobs; their history"
    )
    actions = jobs.add_subparsers(
        dest="action", metavar="ACTION", required=True, help="what to do with jobs"
    )
    listing = _parser(actions, "list", "jobs, newest first, a page at a time", make)
    _add_filters(listing)
    listing.add_argument("--limit", type=int, default=50, help="jobs per page (50)")
    listing.add_argument("--after", type=int, help="the cursor printed under the last page")
    listing.add_argument("--oldest", action="store_true", help="oldest first")
    show = _parser(actions, "show", "one job, with its payload and last error", make)
    show.add_argument("id", type=int, help="the job's id")
    for name, text in [
        ("retry", "run the jobs now with fresh attempts"),
        ("delete", "delete the jobs"),
        ("reschedule", "move the jobs to --run-at"),
    ]:
        bulk = _parser(actions, name, f"{text} (by id or by filters; --yes to act)", make)
        _add_filters(bulk)
        bulk.add_argument("ids", type=int, nargs="*", help="job ids (else the filters select)")
        bulk.add_argument("--all", action="store_true", help="every job, when no filter")
        bulk.add_argument("--yes", action="store_true", help="act (else only count)")
        if name == "reschedule":
            bulk.add_argument("--run-at", required=True, help="ISO 8601 time with an offset")
    history = _parser(actions, "history", "finished jobs of tasks that keep results", make)
    history.add_argument("--task", help="only jobs of this task identifier")
    history.add_argument(
        "--outcome", choices=["success", "failed", "cancelled"], help="only jobs that ended so"
    )
    history.add_argument("--job", type=int, help="only the job with this id")
    history.add_argument("--limit", type=int, default=50, help="jobs per page (50)")
    history.add_argument("--before", type=int, help="the cursor printed under the last page")
    cancel = _parser(actions, "cancel", "cancel a job; a running one is aborted", make)
    cancel.add_argument("id", type=int, help="the job's id")
    queues = _parser(commands, "queues", "named queues: list, pause, resume", make)
    queues.add_argument("action", choices=["list", "pause", "resume"], help="what to do")
    queues.add_argument("name", nargs="?", help="the queue to pause or resume")
    _parser(commands, "stats", "jobs by task, queue and state; oldest waits; limits", make)
    limits = _parser(commands, "limits", "concurrency and rate limits: list, set, reset", make)
    limits.add_argument("action", choices=["list", "set", "reset"], help="what to do")
    limits.add_argument("name", nargs="?", help="the limit to set or reset")
    for flag, kind, text in [
        ("--concurrency", _cap, "jobs at once per key ('none': no cap)"),
        ("--rate", _rate, "starts per window per key: COUNT/SECONDS, e.g. 20/1 ('none')"),
    ]:  # not given: left as it is
        limits.add_argument(flag, type=kind, default=argparse.SUPPRESS, help=text)
    workers = _parser(commands, "workers", "live zodworker pools (`workers list`)", make)
    workers.add_argument("action", choices=["list"], help="what to do")
    unlock = _parser(commands, "unlock", "release what the given worker ids hold", make)
    unlock.add_argument("workers", nargs="+", help="pool or graphile-worker ids")
