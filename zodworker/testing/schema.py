"""A migrated, empty schema per test, on the test database (see :mod:`zodworker.testing`)."""

from __future__ import annotations

import asyncio
import os
import secrets
from dataclasses import dataclass
from typing import Any

from ..catalog import TaskCatalog
from ..client import ZodWorker
from ..db.connect import conninfo_from_env
from ..db.migrate import drop_schema, migrate_url

__all__ = ["TestDatabase", "test_database_url"]

ENV: str = "ZODWORKER_TEST_DATABASE_URL"


def test_database_url() -> str:
    """``ZODWORKER_TEST_DATABASE_URL``, else ``DATABASE_URL``, else the embedded
    PostgreSQL's URL (started once for the process)."""
    found = os.environ.get(ENV) or conninfo_from_env(None)
    if found:
        return found
    from ..embedded import start_embedded

    return start_embedded()


test_database_url.__test__ = False  # type: ignore[attr-defined]  # not a test to collect


@dataclass(frozen=True)
class TestDatabase:
    """One test's schema: ``url`` and ``schema``, and clients made for them."""

    __test__ = False  # not a test class

    url: str
    schema: str

    @classmethod
    def create(cls, url: str) -> TestDatabase:
        """A new schema with a unique name, migrated to the latest revision."""
        schema = f"zw_test_{secrets.token_hex(6)}"
        asyncio.run(migrate_url(url, schema))
        return cls(url, schema)

    def drop(self) -> None:
        """Drop the schema and everything in it."""
        asyncio.run(drop_schema(self.url, self.schema))

    def client(self, catalog: TaskCatalog, **options: Any) -> ZodWorker:
        """A client of ``catalog`` on this schema that runs no jobs by itself (jobs run
        when the test calls :func:`~zodworker.testing.drain`); ``options`` as for
        :class:`~zodworker.ZodWorker`."""
        options.setdefault("producer_only", True)
        return ZodWorker(
            catalog=catalog, database_url=self.url, schema=self.schema, migrate=False, **options
        )
