"""The command line's arguments. Setting flags are generated from the settings table
(:mod:`zodworker.settings`), so a flag, its ``ZODWORKER_*`` variable and its config-file key
always agree; each command shows only the options it uses.

graphile-worker's command line has no commands, so ``run`` is the default and its flags are
also accepted before the command: ``zodworker -j 2``, ``zodworker -j 2 run`` and ``zodworker
run -j 2`` mean the same. Setting flags have no argparse default: the namespace holds only
what was given, and :func:`flag_values` hands that to :func:`~zodworker.settings.load_settings`.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Final

from ..settings import SETTINGS, Group, Setting
from .admin_parser import add_admin_commands
from .dashboard import add_dashboard_command

__all__ = ["EPILOG", "build_parser", "flag_values"]

EPILOG: Final = """\
settings: a flag, else its ZODWORKER_* environment variable, else the config file
  (--config FILE, else ./zodworker.toml, else [tool.zodworker] in ./pyproject.toml), else the
  default; `zodworker config` shows each setting's value and where it came from.
database: -c/--connection, else ZODWORKER_CONNECTION or DATABASE_URL, else an embedded
  PostgreSQL started for you (data in $ZODWORKER_EMBEDDED_DIR, else
  ~/.local/share/zodworker/pg, or /var/lib/zodworker/pg as root).
exit codes: 0 done, 1 error, 2 bad usage, 3 nothing found, 4 confirmation needed (--yes),
  57 the database has a newer breaking schema revision than this zodworker knows (upgrade
  zodworker; graphile-worker exits 57 too).
"""
RUN_GROUPS: Final[tuple[Group, ...]] = ("connection", "worker", "tasks", "logging", "metrics")
BASIC: Final[tuple[Group, ...]] = ("connection", "logging")
_TITLES: Final = {
    "connection": "database",
    "worker": "worker",
    "tasks": "tasks and cron",
    "logging": "logging",
    "metrics": "metrics and health",
}


def _add_setting(group: Any, setting: Setting) -> None:
    if not setting.flags:
        return
    text = setting.help
    if setting.kind == "bool" and setting.default:
        text = f"turn off: {text}"
    elif setting.default is not None and setting.kind != "bool":
        default = setting.default
        if setting.flag_scale != 1.0:
            default = round(default / setting.flag_scale)
        text = f"{text} (default {default})"
    common: dict[str, Any] = {
        "dest": setting.name,
        "default": argparse.SUPPRESS,
        "help": f"{text} [{setting.env}]",
    }
    if setting.kind == "bool":
        action = "store_false" if setting.default else "store_true"
        group.add_argument(*setting.flags, action=action, **common)
        return
    kind: Any = {"int": int, "float": float, "path": Path, "str": str}[setting.kind]
    if setting.flag_scale != 1.0:
        kind = float
    group.add_argument(
        *setting.flags, type=kind, choices=setting.choices, metavar=setting.metavar, **common
    )


def _add_settings(
    parser: argparse.ArgumentParser, groups: Iterable[Group], only: Iterable[str] = ()
) -> None:
    """The setting flags of ``groups`` (and of the settings named in ``only``)."""
    named = set(only)
    chosen = tuple(groups)
    for group_name in (*chosen, *(g for g in _TITLES if g not in chosen)):
        settings = [
            s
            for s in SETTINGS
            if s.group == group_name and (group_name in chosen or s.name in named)
        ]
        if not any(s.flags for s in settings):
            continue
        group = parser.add_argument_group(_TITLES[group_name])
        for setting in settings:
            _add_setting(group, setting)
        if group_name == "logging":
            group.add_argument(
                "-v",
                "--verbose",
                dest="log_level",
                action="store_const",
                const="debug",
                default=argparse.SUPPRESS,
                help="log at debug level (--log-level debug)",
            )
    parser.add_argument(
        "--config",
        type=Path,
        default=argparse.SUPPRESS,
        metavar="FILE",
        help="config file (default: ./zodworker.toml, else [tool.zodworker] in pyproject.toml) "
        "[ZODWORKER_CONFIG]",
    )


def _add_run_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--once", action="store_true", default=argparse.SUPPRESS, help="run the due jobs, exit"
    )
    parser.add_argument(
        "--schema-only",
        action="store_true",
        default=argparse.SUPPRESS,
        help="install or upgrade the schema, then exit (as `migrate`)",
    )
    _add_settings(parser, RUN_GROUPS)


def _command(commands: Any, name: str, text: str, **more: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = commands.add_parser(
        name,
        help=text,
        description=text[0].upper() + text[1:] + ".",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        **more,
    )
    return parser


def build_parser() -> argparse.ArgumentParser:
    """The parser of every command."""
    parser = argparse.ArgumentParser(
        prog="zodworker",
        description="Typed background jobs on PostgreSQL, sharing graphile-worker's schema. "
        "With no command, runs a worker (`run`); its options are listed here.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_run_flags(parser)
    commands = parser.add_subparsers(
        dest="command", metavar="COMMAND", help="what to do (default: run)"
    )
    _add_run_flags(_command(commands, "run", "run a worker (the default command)"))
    for name, text in [
        ("migrate", "install or upgrade the schema, then exit"),
        ("status", "show jobs per task and state"),
    ]:
        _add_settings(_command(commands, name, text), BASIC)
    demo = _command(commands, "demo", "add demo jobs and run a worker for them (Ctrl-C stops)")
    _add_settings(demo, ("connection", "logging", "metrics"))
    _add_config(commands)
    _add_cron(commands)
    _add_job(commands)
    add_admin_commands(commands, _basic_command)
    dashboard = _command(
        commands, "dashboard", "serve the web dashboard (127.0.0.1 unless given credentials)"
    )
    _add_settings(dashboard, BASIC, only=("crontab",))
    add_dashboard_command(dashboard)
    return parser


def _basic_command(commands: Any, name: str, text: str) -> argparse.ArgumentParser:
    parser = _command(commands, name, text)
    _add_settings(parser, BASIC)
    return parser


def _add_config(commands: Any) -> None:
    config = _command(
        commands, "config", "show the effective settings of `run` and where each came from"
    )
    config.add_argument("--json", action="store_true", help="print JSON for scripts")
    _add_run_flags(config)


def _add_cron(commands: Any) -> None:
    cron = _command(commands, "cron", "cron items: `cron list` shows their next runs")
    cron.add_argument("action", choices=["list"], help="what to do (list: each item's next runs)")
    cron.add_argument("-n", "--next", type=int, default=5, help="runs to show per item (5)")
    _add_settings(cron, ("logging",), only=("crontab",))


def _add_job(commands: Any) -> None:
    add = _command(commands, "add-job", "add one job")
    add.add_argument("task", help="task identifier")
    add.add_argument(
        "payload",
        nargs="?",
        default="{}",
        help="JSON payload (default {}); '-' reads it from stdin, @FILE from a file",
    )
    add.add_argument("--queue", dest="queue_name", help="named queue (its jobs run one at a time)")
    add.add_argument("--run-at", help="ISO 8601 time with an offset, e.g. 2030-01-01T00:00:00Z")
    add.add_argument("--max-attempts", type=int, help="attempts before it fails for good (25)")
    add.add_argument("--job-key", help="unique key: adding again replaces the waiting job")
    add.add_argument(
        "--job-key-mode",
        choices=["replace", "preserve_run_at", "unsafe_dedupe"],
        help="what adding with an existing key does (replace)",
    )
    add.add_argument("--priority", type=int, help="lower runs first (0)")
    add.add_argument("--flag", dest="flags", action="append", help="a flag (repeatable)")
    _add_settings(add, BASIC)


def flag_values(args: argparse.Namespace) -> dict[str, Any]:
    """The settings given as flags, by setting name, scaled to the setting's unit."""
    given = vars(args)
    values = {}
    for setting in SETTINGS:
        if setting.name in given:
            value = given[setting.name]
            values[setting.name] = value * setting.flag_scale if setting.flag_scale != 1 else value
    return values
