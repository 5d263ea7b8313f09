"""Typed results: enqueue a job, await its typed output, see its failure, list its history.

    DATABASE_URL=postgresql://... python examples/results.py

With no DATABASE_URL it uses the embedded PostgreSQL (``pip install 'zodworker[embedded]'``).
A thumbnail task declares what it returns; ``await handle.result()`` gets a validated
``Thumbnail`` back, a job that fails for good raises ``JobFailed`` with its last error, and
the admin API lists both from the history.
"""

from __future__ import annotations

import asyncio
import os

import psycopg
from pydantic import BaseModel

from zodworker import JobFailed, PermanentFailure, TaskCatalog, ZodWorker, resolve_connection, task
from zodworker.admin import Admin


class Render(BaseModel):
    url: str


class Thumbnail(BaseModel):
    url: str
    width: int


async def render(payload: Render, helpers: object) -> Thumbnail:
    if not payload.url.startswith("https://"):
        raise PermanentFailure(f"refusing to fetch {payload.url}")
    return Thumbnail(url=payload.url.replace(".png", ".thumb.png"), width=128)


class Media(TaskCatalog):
    render = task(Render, render, output=Thumbnail)  # the handler's return value is checked


async def main() -> None:
    url = resolve_connection(os.environ.get("DATABASE_URL"))
    async with ZodWorker(catalog=Media(), database_url=url, log_jobs=False) as client:
        handle = await client.enqueue(Media.render, Render(url="https://example.com/cat.png"))
        thumbnail = await handle.result(timeout=30)  # a Thumbnail: typed for mypy too
        print(f"thumbnail {thumbnail.url} width {thumbnail.width}")
        bad = await client.enqueue(Media.render, Render(url="ftp://example.com/cat.png"))
        try:
            await client.result(bad.id, timeout=30)  # by id: works from any process
        except JobFailed as failed:
            print(
                f"{failed.outcome} after {failed.attempts} attempt(s): "
                f"{failed.last_error.splitlines()[0] if failed.last_error else ''}"
            )
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            for row in await Admin().history(conn, task="render"):
                which = "bad" if row.job_id == bad.id else "good"
                print(f"history: job {which} {row.outcome}")


if __name__ == "__main__":
    asyncio.run(main())
