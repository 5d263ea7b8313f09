"""A task app for worker processes under limits: each run of ``limited`` is recorded with
the server's clock in ``limited_runs`` (started, finished; the job's ``locked_at``, when its
fetch took it, and ``created_at``), and sleeps ``payload["sleep"]`` seconds."""

from __future__ import annotations

import textwrap
from pathlib import Path

from tests.support.procapp import sql

__all__ = ["APP", "TABLE", "most_at_once", "prepare_limit_app"]

APP = textwrap.dedent(
    """
    import asyncio

    RECORD = (
        "insert into limited_runs (job_id, key, locked_at, created_at) values (%s, %s, %s, %s)"
        " returning id"
    )
    FINISH = "update limited_runs set finished_at = clock_timestamp() where id = %s"


    async def limited(payload, helpers):
        job = helpers.job
        rows = await helpers.query(RECORD, (job.id, payload["k"], job.locked_at, job.created_at))
        await asyncio.sleep(payload.get("sleep", 0))
        await helpers.query(FINISH, (rows[0][0],))


    TASKS = {"limited": limited}
    """
)

TABLE = """
create table limited_runs (
  id bigserial primary key,
  job_id bigint not null,
  key text not null,
  locked_at timestamptz not null,
  created_at timestamptz not null,
  started_at timestamptz not null default clock_timestamp(),
  finished_at timestamptz
);
"""


def prepare_limit_app(url: str, tmp_path: Path) -> None:
    """Create ``limited_runs`` and write ``limitapp.py`` (run ``--app limitapp:TASKS``)."""
    sql(url, TABLE)
    (tmp_path / "limitapp.py").write_text(APP)


def most_at_once(spans: list[tuple[float, float]]) -> int:
    """The most of ``spans`` (start, end) open at one moment; an end at t closes before a
    start at t."""
    edges = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    most = running = 0
    for _, step in edges:
        running += step
        most = max(most, running)
    return most
