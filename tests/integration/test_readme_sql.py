"""The SQL the README gives users runs as written against a migrated database."""

from __future__ import annotations

import re
from pathlib import Path

import psycopg

README = Path(__file__).resolve().parents[2] / "README.md"


def _sql_block_under(heading: str) -> str:
    text = README.read_text("utf-8")
    section = text[text.index(heading) :]
    match = re.search(r"```sql\n(.*?)```", section, re.S)
    assert match, f"no sql block under {heading!r}"
    return match.group(1)


def test_the_autovacuum_settings_apply_to_the_jobs_table(db_url: str) -> None:
    block = _sql_block_under("### A big backlog: autovacuum")
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(block.encode())
        row = conn.execute(
            "select reloptions from pg_class where oid = 'graphile_worker._private_jobs'::regclass"
        ).fetchone()
    assert row is not None
    assert set(row[0]) == {
        "autovacuum_vacuum_scale_factor=0",
        "autovacuum_vacuum_threshold=100000",
        "autovacuum_vacuum_cost_delay=0",
    }
