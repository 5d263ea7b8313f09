"""Loading the ``.sql`` files: migrations and named runtime queries.

All SQL lives in ``sql/`` (shipped inside the wheel as ``zodworker/_sql``). A schema name
enters SQL only through :class:`psycopg.sql.Identifier`: every ``:SCHEMA`` token in a file is
replaced by the quoted identifier, the rest of the text is passed through untouched. Values
are always bound parameters.

Runtime queries live in ``sql/queries/*.sql``, each introduced by a ``-- name: <name>``
line. They are rendered once per (name, schema) and cached as bytes.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from psycopg import sql

__all__ = ["BREAKING_REVISIONS", "Migration", "migrations", "own_migrations", "query", "render"]

_PLACEHOLDER = re.compile(r":SCHEMA\b")
_NAME_LINE = re.compile(r"^--\s*name:\s*([a-z_][a-z0-9_]*)\s*$", re.MULTILINE)
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
    return Path(__file__).resolve().parent.parent / "sql"


def render(text: str, schema: str) -> bytes:
    """Return ``text`` with each ``:SCHEMA`` token replaced by the quoted ``schema``."""
    parts = _PLACEHOLDER.split(text)
    ident = sql.Identifier(schema)
    pieces: list[sql.Composable] = []
    for index, part in enumerate(parts):
        if index:
            pieces.append(ident)
        pieces.append(sql.SQL(part))  # file text, never user input
    return sql.Composed(pieces).as_bytes(None)


def _migration_files(folder: str, breaking: frozenset[int]) -> tuple[Migration, ...]:
    found = []
    for path in sorted((_sql_root() / folder).glob("[0-9][0-9][0-9][0-9][0-9][0-9].sql")):
        revision = int(path.stem)
        found.append(Migration(revision, revision in breaking, path.read_text("utf-8")))
    if not found:
        raise RuntimeError(f"no migration files found under {_sql_root() / folder}")
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
    for path in sorted((_sql_root() / "queries").glob("*.sql")):
        chunks = _NAME_LINE.split(path.read_text("utf-8"))
        # chunks = [preamble, name1, body1, name2, body2, ...]
        for name, body in zip(chunks[1::2], chunks[2::2], strict=True):
            if name in texts:
                raise RuntimeError(f"query {name!r} is defined twice (second in {path})")
            texts[name] = body.strip()
    return texts


@functools.cache
def query(name: str, schema: str) -> bytes:
    """The named runtime query, rendered for ``schema``."""
    try:
        text = _query_texts()[name]
    except KeyError:
        raise KeyError(f"no SQL query named {name!r} in sql/queries") from None
    return render(text, schema)
