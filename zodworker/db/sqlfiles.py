"""Loading the ``.sql`` files: migrations and named runtime queries.

All SQL lives in ``sql/`` (shipped inside the wheel as ``zodworker/_sql``). A schema name
(or another identifier: a database, a LISTEN channel) enters SQL only through
:class:`psycopg.sql.Identifier`: every ``:SCHEMA`` token in a file is replaced by the quoted
identifier, the rest of the text is passed through untouched. Values are always bound
parameters.

Runtime queries live in ``sql/queries/*.sql``, each introduced by a ``-- name: <name>``
line; the comment lines right after it document the query and are not sent. A
``-- fragment: <name>`` block is a piece of SQL that queries share: ``/*include <name>*/``
in a query (or another fragment) stands for it. They are
rendered once per (name, schema) and cached as bytes.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from psycopg import sql

from ..errors import PackageError

__all__ = [
    "BREAKING_REVISIONS",
    "Migration",
    "migrations",
    "own_migrations",
    "query",
    "render",
    "server_query",
]

_NAME_LINE = re.compile(r"^--\s*(name|fragment):\s*([a-z_][a-z0-9_]*)\s*$", re.MULTILINE)
_INCLUDE = re.compile(r"/\*include ([a-z_][a-z0-9_]*)\*/")
# graphile-worker flags these revisions as breaking; a worker that does not know a newer
# breaking revision must refuse to run. Part of the shared schema's contract.
BREAKING_REVISIONS = frozenset({1, 3, 11, 13, 14, 16, 19})


@dataclass(frozen=True, slots=True)
class Migration:
    """One numbered migration file."""

    revision: int
    breaking: bool
    text: str


def _sql_root() -> Path:
    packaged = resources.files("zodworker") / "_sql"
    if packaged.is_dir():
        return Path(str(packaged))
    # Editable install / source checkout: the files sit at the project's top level.
    return Path(__file__).resolve().parents[2] / "sql"


def render(text: str, identifiers: Mapping[str, str]) -> bytes:
    """Return ``text`` with each ``:NAME`` token, for every ``NAME`` in ``identifiers``,
    replaced by that identifier, quoted (``{"SCHEMA": "graphile_worker"}``)."""
    if not identifiers:
        return text.encode("utf-8")
    names = "|".join(re.escape(name) for name in identifiers)
    parts = re.split(f":({names})\\b", text)
    # parts = [text, NAME, text, NAME, text, ...]
    pieces: list[sql.Composable] = []
    for index, part in enumerate(parts):
        if index % 2:
            pieces.append(sql.Identifier(identifiers[part]))
        else:
            pieces.append(sql.SQL(part))  # file text, never user input
    return sql.Composed(pieces).as_bytes(None)


def _migration_files(folder: str, breaking: frozenset[int]) -> tuple[Migration, ...]:
    found = []
    for path in sorted((_sql_root() / folder).glob("[0-9][0-9][0-9][0-9][0-9][0-9].sql")):
        revision = int(path.stem)
        found.append(Migration(revision, revision in breaking, path.read_text("utf-8")))
    if not found:
        raise PackageError(
            f"no migration files found under {_sql_root() / folder}; the installation is "
            "incomplete, reinstall zodworker"
        )
    return tuple(found)


@functools.cache
def migrations() -> tuple[Migration, ...]:
    """graphile-worker's schema revisions we implement (``sql/migrations``), in order."""
    return _migration_files("migrations", BREAKING_REVISIONS)


@functools.cache
def own_migrations() -> tuple[Migration, ...]:
    """zodworker's own additions (``sql/zodworker``), in order; recorded separately."""
    return _migration_files("zodworker", frozenset())


@functools.cache
def _query_texts() -> dict[str, str]:
    texts: dict[str, str] = {}
    fragments: dict[str, str] = {}
    for path in sorted((_sql_root() / "queries").glob("*.sql")):
        chunks = _NAME_LINE.split(path.read_text("utf-8"))
        # chunks = [preamble, kind1, name1, body1, kind2, name2, body2, ...]
        for kind, name, body in zip(chunks[1::3], chunks[2::3], chunks[3::3], strict=True):
            table = texts if kind == "name" else fragments
            if name in table:
                raise PackageError(f"SQL {kind} {name!r} is defined twice (second in {path})")
            table[name] = _without_leading_comments(body)
    return {name: _expand(text, fragments, ()) for name, text in texts.items()}


def _expand(text: str, fragments: dict[str, str], seen: tuple[str, ...]) -> str:
    """``text`` with each ``/*include NAME*/`` replaced by the fragment ``NAME`` (fragments
    may include fragments; a cycle is an error)."""

    def replace(found: re.Match[str]) -> str:
        name = found.group(1)
        if name in seen or name not in fragments:
            raise PackageError(f"SQL fragment {name!r} is missing or includes itself")
        return _expand(fragments[name], fragments, (*seen, name))

    return _INCLUDE.sub(replace, text)


def _without_leading_comments(body: str) -> str:
    """A query's text without the comment lines that document it (they stay in the file)."""
    lines = body.strip().splitlines()
    while lines and lines[0].lstrip().startswith("--"):
        lines.pop(0)
    return "\n".join(lines).strip()


def _text(name: str) -> str:
    try:
        return _query_texts()[name]
    except KeyError:
        raise PackageError(f"no SQL query named {name!r} in sql/queries") from None


@functools.cache
def query(name: str, schema: str) -> bytes:
    """The named runtime query, rendered for ``schema`` (its ``:SCHEMA`` tokens)."""
    return render(_text(name), {"SCHEMA": schema})


def server_query(name: str, **identifiers: str) -> bytes:
    """A named query about the server rather than a schema (databases, LISTEN), with its
    ``:NAME`` tokens replaced by the quoted ``identifiers``."""
    return render(_text(name), identifiers)
