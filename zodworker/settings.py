"""Settings of a zodworker process: one table, four sources, validated once.

Every setting has a name (its key in a config file, and the :class:`WorkerOptions` field
where there is one), a type, a default, help text, and where it applies. A value comes from,
highest first::

    flag         zodworker run --jobs 4
    environment  ZODWORKER_CONCURRENCY=4 (connection also from DATABASE_URL)
    file         concurrency = 4, in the config file
    default      the table's

The config file is ``--config FILE`` (or ``ZODWORKER_CONFIG``), else ``./zodworker.toml``,
else the ``[tool.zodworker]`` table of ``./pyproject.toml``. Keys may be written with ``_``
or ``-``; paths in a file are relative to the file. An unknown key in the file is an error
naming it and the file, with the close names; an unknown ``ZODWORKER_*`` variable is a
warning (:attr:`Settings.warnings`, logged at start), since environments are shared with
other programs; a bad value is an error naming the setting, its source and what is
accepted. Times are seconds
everywhere except graphile-worker's ``--poll-interval`` flag, which takes milliseconds.

``zodworker config`` prints the effective settings and where each came from;
:func:`load_settings` gives the same to code (``settings.worker_options()``).
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Final, Literal, TypeVar
from urllib.parse import urlsplit, urlunsplit

from .config import FETCH_AHEAD, MetricsOptions, WorkerOptions
from .errors import ConfigError, UnknownOptionError

__all__ = ["SETTINGS", "Setting", "Settings", "load_settings"]

T = TypeVar("T")
Kind = Literal["str", "int", "float", "bool", "path"]
Group = Literal["connection", "worker", "tasks", "logging", "metrics"]
ENV_PREFIX: Final = "ZODWORKER_"
ENV_CONFIG: Final = "ZODWORKER_CONFIG"
_OTHER_ENV: Final = frozenset({ENV_CONFIG, "ZODWORKER_EMBEDDED_DIR"})
_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off"})


@dataclass(frozen=True, slots=True)
class Setting:
    """One setting (see the module docs)."""

    name: str
    kind: Kind
    default: Any
    help: str
    group: Group
    flags: tuple[str, ...] = ()
    flag_scale: float = 1.0
    """A flag's value times this is the setting's (``--poll-interval`` is in ms)."""
    metavar: str | None = None
    choices: tuple[str, ...] | None = None
    env_aliases: tuple[str, ...] = ()
    secret: bool = False
    """Shown with its password masked."""

    @property
    def env(self) -> str:
        """Its environment variable."""
        return ENV_PREFIX + self.name.upper()


def _s(
    name: str, kind: Kind, default: Any, group: Group, text: str, *flags: str, **more: Any
) -> Setting:
    return Setting(name, kind, default, text, group, flags, **more)


# fmt: off
SETTINGS: Final = (
    _s("connection", "str", None, "connection",
       "PostgreSQL URL (default: DATABASE_URL, else an embedded PostgreSQL started for you)",
       "-c", "--connection", env_aliases=("DATABASE_URL",), secret=True, metavar="URL"),
    _s("schema", "str", "graphile_worker", "connection", "schema of the jobs tables",
       "-s", "--schema"),
    _s("listen_connection", "str", None, "worker",
       "direct or session-pooled URL for LISTEN, when --connection goes through PgBouncer",
       "--listen-connection", secret=True, metavar="URL"),
    _s("use_prepared_statements", "bool", True, "worker",
       "server-side prepared statements (turn off for PgBouncer in transaction mode)",
       "--no-prepared-statements"),
    _s("concurrency", "int", 1, "worker", "jobs run at the same time", "-j", "--jobs",
       metavar="N"),
    _s("max_pool_size", "int", 10, "worker", "connections in the process's pool",
       "-m", "--max-pool-size", metavar="N"),
    _s("poll_interval", "float", 2.0, "worker",
       "seconds between polls when idle (the flag takes milliseconds, as graphile-worker's)",
       "--poll-interval", flag_scale=0.001, metavar="MS"),
    _s("poll_only", "bool", False, "worker", "no LISTEN: find new jobs by polling only",
       "--poll-only"),
    _s("local_queue_size", "int", -1, "worker",
       "jobs fetched per query and held locally (-1: only for idle slots)",
       "--local-queue-size", metavar="N"),
    _s("local_queue_fetch_ahead", "str", "auto", "worker",
       "with a local queue, fetch the next batch while this one runs (auto: when alone)",
       choices=FETCH_AHEAD),
    _s("local_queue_max_size", "int", None, "worker",
       "largest batch a pool of quick jobs grows to (default 4 x local_queue_size)"),
    _s("local_queue_ttl", "float", 300.0, "worker",
       "seconds a locally held job may wait before it is given back"),
    _s("complete_job_batch_delay", "float", 0.0, "worker",
       "seconds to gather completions into one write"),
    _s("fail_job_batch_delay", "float", 0.0, "worker", "seconds to gather failures into one write"),
    _s("graceful_shutdown_abort_timeout", "float", 5.0, "worker",
       "seconds into a graceful shutdown before running jobs get their abort signal"),
    _s("max_contiguous_errors", "int", 10, "worker",
       "failed fetches in a row after which the worker stops"),
    _s("heartbeat_interval", "float", 5.0, "worker", "seconds between lease renewals"),
    _s("recovery_timeout", "float", 30.0, "worker",
       "seconds after which a silent pool is presumed dead and its jobs run again"),
    _s("sweep_stale_locks", "bool", True, "worker",
       "also run graphile-worker's 4-hour stale-lock sweep"),
    _s("unserved_warning_interval", "float", 60.0, "worker",
       "warn about jobs waiting this long for a task no live pool runs (0: never)"),
    _s("log_jobs", "bool", True, "worker", "log a line per successful job", "--no-log-jobs"),
    _s("history", "bool", False, "worker",
       "keep a history row (and the result) of every finished job, not only of tasks that ask",
       "--history"),
    _s("history_retention", "float", 7 * 86_400.0, "worker",
       "prune history rows older than this many seconds", metavar="SECONDS"),
    _s("history_max_rows", "int", None, "worker",
       "prune all but the newest this many history rows (default: no count limit)",
       metavar="N"),
    _s("tasks", "path", None, "tasks",
       "directory of task modules, one per identifier (default: ./tasks when it exists)",
       "--tasks", metavar="DIR"),
    _s("app", "str", None, "tasks",
       "MODULE:OBJECT: a ZodWorker, a TaskCatalog, a task mapping, or a callable returning one",
       "--app", metavar="MODULE:OBJECT"),
    _s("crontab", "path", None, "tasks", "crontab file (default: ./crontab when it exists)",
       "--crontab", metavar="FILE"),
    _s("watch", "bool", False, "tasks", "reload changed task modules and crontab", "--watch"),
    _s("log_format", "str", "text", "logging", "log line format", "--log-format",
       choices=("text", "json")),
    _s("log_level", "str", "info", "logging", "lowest level logged (-v: debug)", "--log-level",
       choices=("debug", "info", "warning", "error")),
    _s("metrics_port", "int", None, "metrics",
       "serve /metrics, /healthz and /readyz on this port (0: any free port)",
       "--metrics-port", metavar="PORT"),
    _s("metrics_host", "str", "0.0.0.0", "metrics", "address the metrics endpoint listens on",
       "--metrics-host", metavar="ADDRESS"),
    _s("metrics_interval", "float", 15.0, "metrics",
       "seconds between the counts of the jobs table behind the state gauges",
       "--metrics-interval", metavar="SECONDS"),
)
# fmt: on

_BY_NAME: Final = {setting.name: setting for setting in SETTINGS}
_WORKER_FIELDS: Final = frozenset(f.name for f in fields(WorkerOptions))


@dataclass(frozen=True, slots=True)
class Value:
    """A setting's effective value and where it came from (``default``, ``file PATH``,
    ``env NAME``, ``flag --name``)."""

    value: Any
    source: str


class Settings(Mapping[str, Any]):
    """The effective settings (a mapping of name to value); see :func:`load_settings`."""

    def __init__(
        self, values: dict[str, Value], file: Path | None, warnings: list[str] | None = None
    ) -> None:
        self.entries = values
        self.file = file
        """The config file read (None: none)."""
        self.warnings = list(warnings or [])
        """What looked wrong but did not stop loading (unknown ``ZODWORKER_*`` variables)."""

    def __getitem__(self, name: str) -> Any:
        return self.entries[name].value

    def __iter__(self) -> Iterator[str]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def source(self, name: str) -> str:
        """Where ``name``'s value came from."""
        return self.entries[name].source

    def shown(self, name: str) -> Any:
        """The value for display: passwords in URLs masked."""
        value = self[name]
        return _mask(value) if _BY_NAME[name].secret and isinstance(value, str) else value

    def worker_options(self, **overrides: Any) -> WorkerOptions:
        """The :class:`WorkerOptions` these settings make (``overrides`` win); a bad value
        is a ConfigError naming the setting and where it was set."""
        given = {n: v.value for n, v in self.entries.items() if n in _WORKER_FIELDS}
        return self._checked(lambda: WorkerOptions(**{**given, **overrides}))

    def metrics_options(self) -> MetricsOptions | None:
        """The metrics endpoint asked for (None without ``metrics_port``)."""
        if self["metrics_port"] is None:
            return None
        return self._checked(
            lambda: MetricsOptions(
                port=self["metrics_port"],
                host=self["metrics_host"],
                interval=self["metrics_interval"],
            )
        )

    def _checked(self, make: Callable[[], T]) -> T:
        try:
            return make()
        except ConfigError as exc:
            name = exc.field.replace("metrics.", "metrics_")
            if name in self.entries and self.source(name) != "default":
                reason = f"{_reason(exc)} (set by {self.source(name)})"
                raise ConfigError(exc.field, reason) from None
            raise


def load_settings(
    flags: Mapping[str, Any] | None = None,
    *,
    config_file: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
    cwd: str | Path | None = None,
) -> Settings:
    """The effective settings from ``flags`` (setting name -> value, as given on the
    command line; ``None`` values are ignored), the environment, the config file and the
    defaults. Raises ConfigError / UnknownOptionError naming what is wrong and where."""
    env = os.environ if environ is None else environ
    here = Path.cwd() if cwd is None else Path(cwd)
    file = _find_file(config_file, env, here)
    from_file = _read_file(file) if file is not None else {}
    warnings = _unknown_env_names(env)
    values: dict[str, Value] = {}
    for setting in SETTINGS:
        value = Value(setting.default, "default")
        if setting.name in from_file:
            value = Value(from_file[setting.name], f"file {file}")
        for name in (*reversed(setting.env_aliases), setting.env):
            if env.get(name, "") != "":
                value = Value(_from_text(setting, env[name], f"env {name}", here), f"env {name}")
        given = (flags or {}).get(setting.name)
        if given is not None:
            value = Value(given, f"flag {setting.flags[-1] if setting.flags else setting.name}")
        values[setting.name] = value
    return Settings(values, file, warnings)


def _find_file(given: str | Path | None, env: Mapping[str, str], here: Path) -> Path | None:
    chosen = given if given is not None else env.get(ENV_CONFIG) or None
    if chosen is not None:
        path = here / Path(chosen).expanduser()
        if not path.is_file():
            raise ConfigError("config", f"{path} does not exist or is not a file")
        return path
    own = here / "zodworker.toml"
    if own.is_file():
        return own
    pyproject = here / "pyproject.toml"
    if pyproject.is_file() and "zodworker" in _toml(pyproject).get("tool", {}):
        return pyproject
    return None


def _toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError("config", f"{path}: cannot read it ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("config", f"{path}: not valid TOML ({exc})") from None


def _read_file(path: Path) -> dict[str, Any]:
    data: Any = _toml(path)
    if path.name == "pyproject.toml":
        data = data.get("tool", {}).get("zodworker", {})
    if not isinstance(data, dict):
        raise ConfigError("config", f"{path}: [tool.zodworker] must be a table")
    found: dict[str, Any] = {}
    for key, raw in data.items():
        name = key.replace("-", "_")
        setting = _BY_NAME.get(name)
        if setting is None:
            raise UnknownOptionError(key, f"is not a zodworker setting (in {path}){_close(name)}")
        found[name] = _from_file(setting, raw, path)
    return found


def _unknown_env_names(env: Mapping[str, str]) -> list[str]:
    found = []
    for name in sorted(env):
        if name.startswith(ENV_PREFIX) and name not in _OTHER_ENV:
            setting = name.removeprefix(ENV_PREFIX).lower()
            if setting not in _BY_NAME:
                found.append(
                    f"{name} is not a zodworker setting's variable; ignored"
                    + _close(setting, env=True)
                )
    return found


def _close(name: str, *, env: bool = False) -> str:
    close = difflib.get_close_matches(name, list(_BY_NAME), n=3)
    shown = [ENV_PREFIX + c.upper() if env else c for c in close]
    hint = f"; did you mean {' or '.join(shown)}?" if close else ""
    return hint + " (`zodworker config` lists every setting)"


def _from_file(setting: Setting, raw: Any, path: Path) -> Any:
    source = f"{setting.name} in {path}"
    kind = setting.kind
    ok = {
        "int": isinstance(raw, int) and not isinstance(raw, bool),
        "float": isinstance(raw, (int, float)) and not isinstance(raw, bool),
        "bool": isinstance(raw, bool),
        "str": isinstance(raw, str),
        "path": isinstance(raw, str),
    }[kind]
    if not ok:
        raise ConfigError(setting.name, f"is {raw!r} in {path}; expected {_expected(setting)}")
    value: Any = float(raw) if kind == "float" else raw
    if kind == "path":
        value = path.parent / Path(raw).expanduser()
    _check_choice(setting, value, source)
    return value


def _from_text(setting: Setting, text: str, source: str, here: Path) -> Any:
    kind = setting.kind
    try:
        if kind == "int":
            value: Any = int(text)
        elif kind == "float":
            value = float(text)
        elif kind == "bool":
            lowered = text.strip().lower()
            if lowered not in _TRUE | _FALSE:
                raise ValueError(text)
            value = lowered in _TRUE
        elif kind == "path":
            value = here / Path(text).expanduser()
        else:
            value = text
    except ValueError:
        raise ConfigError(
            setting.name, f"is {text!r} in {source}; expected {_expected(setting)}"
        ) from None
    _check_choice(setting, value, source)
    return value


def _check_choice(setting: Setting, value: Any, source: str) -> None:
    if setting.choices is not None and value not in setting.choices:
        raise ConfigError(setting.name, f"is {value!r} in {source}; expected {_expected(setting)}")


def _expected(setting: Setting) -> str:
    if setting.choices:
        return "one of " + ", ".join(setting.choices)
    return {
        "int": "an integer",
        "float": "a number of seconds" if "seconds" in setting.help else "a number",
        "bool": "true or false",
        "str": "a string",
        "path": "a path",
    }[setting.kind]


def _reason(exc: ConfigError) -> str:
    return str(exc).removeprefix(f"{exc.field}: ")


def _mask(url: str) -> str:
    """``url`` (or key=value conninfo) with any password replaced by ``***``."""
    masked = re.sub(r"(password\s*=\s*)('[^']*'|[^&\s]*)", r"\1***", url)
    try:
        parts = urlsplit(masked)
    except ValueError:
        return masked
    if not parts.scheme or parts.password is None:
        return masked
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user = userinfo.split(":", 1)[0]
    netloc = f"{user}:***@{hostport}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
