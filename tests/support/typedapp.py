"""A typed application for process tests: a catalog with one validated task that records
each run in ``typed_runs``, a ``ZodWorker`` over it, and ``python typedapp.py`` running the
client as the whole process (``run_until_stopped``)."""

from __future__ import annotations

import textwrap
from pathlib import Path

from tests.support.procapp import sql

__all__ = ["APP", "TABLE", "prepare_typed_app"]

APP = textwrap.dedent(
    """
    import asyncio
    import logging
    import os

    from pydantic import BaseModel

    from zodworker import TaskCatalog, ZodWorker, task


    class Greet(BaseModel):
        n: int
        slow: float = 0.0


    async def greet(payload: Greet, helpers) -> None:
        assert isinstance(payload, Greet)  # the handler gets the validated model
        run = await helpers.query(
            "insert into typed_runs (n) values (%s) returning id", (payload.n,)
        )
        await asyncio.sleep(payload.slow)
        await helpers.query(
            "update typed_runs set finished = true where id = %s", (run[0][0],)
        )


    class App(TaskCatalog):
        greet = task(Greet, handler=greet, max_attempts=5)


    catalog = App()
    client = ZodWorker(
        catalog=catalog, database_url=os.environ.get("APP_DB"), concurrency=2, poll_interval=0.2
    )

    if __name__ == "__main__":
        logging.basicConfig(level=logging.INFO)
        asyncio.run(client.run_until_stopped())
    """
)
TABLE = "create table typed_runs (id serial primary key, n int, finished bool default false)"


def prepare_typed_app(url: str, tmp_path: Path) -> None:
    """Create ``typed_runs`` and write ``typedapp.py`` into ``tmp_path``."""
    sql(url, TABLE)
    (tmp_path / "typedapp.py").write_text(APP)
