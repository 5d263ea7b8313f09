"""Settings: flag > environment > file > default, files found and validated, every error
naming the setting and its source; and the command line built from the same table."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zodworker.cli.parser import build_parser, flag_values
from zodworker.errors import ConfigError, UnknownOptionError
from zodworker.settings import SETTINGS, load_settings

SOURCES = ("flag", "env", "file")


@given(
    present=st.lists(st.sampled_from(SOURCES), unique=True),
    values=st.lists(st.integers(min_value=1, max_value=500), min_size=3, max_size=3),
)
def test_the_highest_source_present_wins(present: list[str], values: list[int]) -> None:
    chosen = dict(zip(SOURCES, values, strict=True))
    with tempfile.TemporaryDirectory() as tmp:
        here = Path(tmp)
        if "file" in present:
            (here / "zodworker.toml").write_text(f"concurrency = {chosen['file']}\n")
        env = {"ZODWORKER_CONCURRENCY": str(chosen["env"])} if "env" in present else {}
        flags = {"concurrency": chosen["flag"]} if "flag" in present else {}
        settings = load_settings(flags, environ=env, cwd=here)
    winner = next((s for s in SOURCES if s in present), None)
    expected = 1 if winner is None else chosen[winner]
    assert settings["concurrency"] == expected
    assert settings.source("concurrency").split()[0] == (winner or "default")
    assert settings.worker_options().concurrency == expected


def test_pyproject_tool_table_paths_and_dashes(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\n\n[tool.zodworker]\npoll-interval = 0.5\ntasks = "jobs"\n'
        "log_jobs = false\n"
    )
    settings = load_settings(cwd=tmp_path, environ={})
    assert settings.file == tmp_path / "pyproject.toml"
    assert settings["poll_interval"] == 0.5
    assert settings["tasks"] == tmp_path / "jobs"  # relative to the file
    assert settings["log_jobs"] is False
    assert settings.source("poll_interval") == f"file {tmp_path / 'pyproject.toml'}"


def test_zodworker_toml_wins_over_pyproject_and_config_flag_over_both(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.zodworker]\nconcurrency = 2\n")
    (tmp_path / "zodworker.toml").write_text("concurrency = 3\n")
    (tmp_path / "prod.toml").write_text("concurrency = 4\n")
    assert load_settings(cwd=tmp_path, environ={})["concurrency"] == 3
    assert (
        load_settings(cwd=tmp_path, environ={"ZODWORKER_CONFIG": "prod.toml"})["concurrency"] == 4
    )
    assert load_settings(config_file="prod.toml", cwd=tmp_path, environ={})["concurrency"] == 4


def test_a_pyproject_without_our_table_is_not_a_config_file(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.ruff]\nline-length = 100\n")
    settings = load_settings(cwd=tmp_path, environ={})
    assert settings.file is None and settings.source("concurrency") == "default"


def test_database_url_feeds_the_connection_below_its_own_variable(tmp_path: Path) -> None:
    env = {"DATABASE_URL": "postgresql://a/one"}
    assert load_settings(cwd=tmp_path, environ=env)["connection"] == "postgresql://a/one"
    env["ZODWORKER_CONNECTION"] = "postgresql://a/two"
    settings = load_settings(cwd=tmp_path, environ=env)
    assert (settings["connection"], settings.source("connection")) == (
        "postgresql://a/two",
        "env ZODWORKER_CONNECTION",
    )


@pytest.mark.parametrize(
    ("file_text", "env", "error", "words"),
    [
        (
            "concurency = 2\n",
            {},
            UnknownOptionError,
            ["concurency", "zodworker.toml", "concurrency"],
        ),
        ("concurrency = '2'\n", {}, ConfigError, ["concurrency", "'2'", "an integer"]),
        ("poll_interval = true\n", {}, ConfigError, ["poll_interval", "a number of seconds"]),
        ("log_format = 'xml'\n", {}, ConfigError, ["log_format", "one of text, json"]),
        ("concurrency = [\n", {}, ConfigError, ["zodworker.toml", "not valid TOML"]),
        ("", {"ZODWORKER_POLL_ONLY": "maybe"}, ConfigError, ["poll_only", "true or false"]),
        ("", {"ZODWORKER_CONCURRENCY": "ten"}, ConfigError, ["env ZODWORKER_CONCURRENCY"]),
    ],
)
def test_bad_settings_name_the_setting_and_where_it_was_set(
    tmp_path: Path, file_text: str, env: dict[str, str], error: type[Exception], words: list[str]
) -> None:
    if file_text:
        (tmp_path / "zodworker.toml").write_text(file_text)
    with pytest.raises(error) as info:
        load_settings(cwd=tmp_path, environ=env)
    for word in words:
        assert word in str(info.value), (word, str(info.value))


def test_an_unknown_variable_is_a_warning_with_the_close_name(tmp_path: Path) -> None:
    env = {"ZODWORKER_CONCURENCY": "2", "ZODWORKER_EMBEDDED_DIR": "/x", "OTHER": "1"}
    settings = load_settings(cwd=tmp_path, environ=env)
    (warning,) = settings.warnings
    assert "ZODWORKER_CONCURENCY" in warning and "did you mean ZODWORKER_CONCURRENCY" in warning
    assert settings["concurrency"] == 1


def test_range_errors_come_once_from_the_options_and_name_the_source(tmp_path: Path) -> None:
    (tmp_path / "zodworker.toml").write_text("concurrency = 0\n")
    settings = load_settings(cwd=tmp_path, environ={})
    with pytest.raises(ConfigError) as info:
        settings.worker_options()
    assert info.value.field == "concurrency"
    assert f"(set by file {tmp_path / 'zodworker.toml'})" in str(info.value)
    flagged = load_settings({"metrics_port": 70000}, cwd=tmp_path, environ={})
    with pytest.raises(ConfigError, match=r"metrics\.port.*set by flag --metrics-port"):
        flagged.metrics_options()


def test_passwords_are_masked_when_shown(tmp_path: Path) -> None:
    env = {
        "ZODWORKER_CONNECTION": "postgresql://app:s3cret@db:5432/jobs",
        "ZODWORKER_LISTEN_CONNECTION": "host=db password='x y' user=app",
    }
    settings = load_settings(cwd=tmp_path, environ=env)
    assert settings.shown("connection") == "postgresql://app:***@db:5432/jobs"
    assert settings.shown("listen_connection") == "host=db password=*** user=app"
    assert settings["connection"].endswith("s3cret@db:5432/jobs")  # the value itself is intact


# ------------------------------------------------------------------ the command line


def _parsers() -> list[tuple[str, argparse.ArgumentParser]]:
    found: list[tuple[str, argparse.ArgumentParser]] = []

    def walk(name: str, parser: argparse.ArgumentParser) -> None:
        found.append((name, parser))
        for action in parser._actions:  # argparse keeps its subparsers here
            if isinstance(action, argparse._SubParsersAction):
                for sub, subparser in action.choices.items():
                    walk(f"{name} {sub}".strip(), subparser)

    walk("", build_parser())
    return found


def test_every_option_of_every_command_has_help_text() -> None:
    for name, parser in _parsers():
        for action in parser._actions:
            if action.help == argparse.SUPPRESS or isinstance(action, argparse._HelpAction):
                continue
            assert action.help, f"`zodworker {name}`: {action.option_strings or action.dest}"


@pytest.mark.parametrize(
    ("command", "shown", "hidden"),
    [
        ("migrate", ["--connection", "--log-format"], ["--jobs", "--app", "--metrics-port"]),
        ("status", ["--schema"], ["--poll-interval", "--once"]),
        ("jobs list", ["--state", "--json"], ["--jobs", "--watch"]),
        ("cron", ["--crontab", "--next"], ["--connection", "--jobs"]),
        ("add-job", ["--queue", "--priority"], ["--once", "--metrics-port"]),
        ("run", ["--jobs", "--metrics-port", "--app", "--once"], ["--json", "--yes"]),
    ],
)
def test_each_command_shows_only_its_own_options(
    command: str, shown: list[str], hidden: list[str]
) -> None:
    parsers = dict(_parsers())
    text = parsers[command].format_help()
    options, _, epilog = text.partition("settings: a flag")
    for option in shown:
        assert option in options, (command, option)
    for option in hidden:
        assert option not in options, (command, option)
    words = " ".join(epilog.split())
    for needed in ("DATABASE_URL", "an embedded PostgreSQL", "57 the database has a newer"):
        assert needed in words, (command, needed)


def test_every_setting_with_a_flag_round_trips_through_the_parser() -> None:
    parser = build_parser()
    for setting in SETTINGS:
        if not setting.flags or setting.kind == "bool":
            continue
        raw: Any = {"int": "7", "float": "7", "str": "x", "path": "p"}[setting.kind]
        if setting.choices:
            raw = setting.choices[-1]
        args = parser.parse_args(["run", setting.flags[-1], raw])
        value = flag_values(args)[setting.name]
        if setting.kind in ("int", "float"):
            assert value == pytest.approx(7 * setting.flag_scale), setting.name
        assert setting.name in flag_values(args)
    assert flag_values(parser.parse_args(["--no-log-jobs"])) == {"log_jobs": False}
    assert flag_values(parser.parse_args(["run", "-v"])) == {"log_level": "debug"}
    assert flag_values(parser.parse_args([])) == {}


README = Path(__file__).resolve().parents[2] / "README.md"


def _readme_configuration() -> str:
    text = README.read_text("utf-8")
    start = text.index("### Configuration")
    return text[start : text.index("\n## ", start)]


def test_the_readme_example_config_loads_and_lists_every_setting(tmp_path: Path) -> None:
    section = _readme_configuration()
    example = section.split("```toml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "pyproject.toml").write_text(example)
    settings = load_settings(cwd=tmp_path, environ={})
    assert settings["concurrency"] == 10 and settings["tasks"] == tmp_path / "jobs"
    assert settings.metrics_options() is not None
    settings.worker_options()
    listed = set(section.split("- The settings:", 1)[1].replace("\n", " ").split("`")[1::2])
    assert listed >= {s.name for s in SETTINGS}, {s.name for s in SETTINGS} - listed
