"""The fixtures of :mod:`zodworker.testing` (registered by its plugin when enabled).

* ``zodworker_url`` (session): the test database's URL (``ZODWORKER_TEST_DATABASE_URL``,
  else ``DATABASE_URL``, else the embedded PostgreSQL);
* ``zodworker_db``: a :class:`~zodworker.testing.TestDatabase`, a migrated, empty schema
  for this test alone, dropped afterwards; ``zodworker_db.client(catalog)`` makes a client
  on it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .schema import TestDatabase, test_database_url

__all__ = ["zodworker_db", "zodworker_url"]


@pytest.fixture(scope="session")
def zodworker_url() -> str:
    """The URL of the database tests get their schemas on."""
    return test_database_url()


@pytest.fixture
def zodworker_db(zodworker_url: str) -> Iterator[TestDatabase]:
    """A migrated, empty schema for this test, dropped afterwards."""
    database = TestDatabase.create(zodworker_url)
    try:
        yield database
    finally:
        database.drop()
