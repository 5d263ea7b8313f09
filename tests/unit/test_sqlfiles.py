"""Loading and rendering the .sql files."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zodworker.db import sqlfiles


def test_migrations_are_numbered_and_flagged() -> None:
    found = sqlfiles.migrations()
    assert [m.revision for m in found] == [19, 20]
    assert [m.breaking for m in found] == [True, False]


def test_every_store_query_renders_and_has_no_leftover_placeholder() -> None:
    for name in ["add_job", "add_jobs", "remove_job", "complete_jobs", "get_job"]:
        text = sqlfiles.query(name, "graphile_worker").decode()
        assert ":SCHEMA" not in text
        assert '"graphile_worker".' in text


def test_unknown_query_name_is_a_clear_error() -> None:
    with pytest.raises(KeyError, match="no SQL query named 'nope'"):
        sqlfiles.query("nope", "s")


@given(st.text(min_size=1, max_size=40).filter(lambda s: "\x00" not in s))
def test_schema_names_are_always_quoted_identifiers(schema: str) -> None:
    text = "select * from :SCHEMA.jobs, :SCHEMA._x; -- :SCHEMAX"
    rendered = sqlfiles.render(text, {"SCHEMA": schema})
    quoted = '"' + schema.replace('"', '""') + '"'
    assert rendered.decode() == f"select * from {quoted}.jobs, {quoted}._x; -- :SCHEMAX"


def test_sql_comment_lines_carry_no_parameter_markers() -> None:
    # psycopg would read a %s inside a comment as a parameter.
    for name in ["add_job", "add_jobs", "reschedule_jobs", "resolve_names", "job_summary"]:
        text = sqlfiles.query(name, "s").decode()
        for line in text.splitlines():
            if line.strip().startswith("--"):
                assert not re.search(r"%[s(]", line), line
