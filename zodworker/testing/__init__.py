"""Testing an application's own tasks against real PostgreSQL: a schema per test, draining
jobs inline, and assertions on what was enqueued.

::

    # conftest.py, or `-p zodworker.testing.fixtures`, or `--zodworker`, or in pytest.ini:
    # [pytest] zodworker = true
    async def test_signup_sends_a_welcome_email(zodworker_db):
        async with zodworker_db.client(App()) as client:
            await signup(client, "ada@example.com")
            await assert_enqueued(client, App.sendEmail, payload={"to": "ada@example.com"})
            drained = await drain(client)
            assert [job.task_identifier for job in drained.succeeded] == ["sendEmail"]

The pytest plugin (:mod:`zodworker.testing.plugin`, registered as the ``zodworker`` pytest
entry point) is off until enabled; it then gives each test that asks a migrated, empty
schema (``zodworker_db``) on ``ZODWORKER_TEST_DATABASE_URL``, else ``DATABASE_URL``, else
the embedded PostgreSQL, dropped after the test. The helpers take a running
:class:`~zodworker.ZodWorker`:

* :func:`drain` runs every job that is due, inline, through the real worker (fetch, lease,
  payload validation, handler, outcome writes, retries scheduled) until none is left due,
  and returns what ran, what succeeded and what failed;
* :func:`enqueued` lists the jobs of a task in the table; :func:`assert_enqueued` checks
  them (payload fields, queue, count) with a message that shows what is there;
* :func:`eager` makes ``client.enqueue`` run the job at once (drained before ``enqueue``
  returns) for tests that want no worker step in between.

Nothing here fakes the queue: every helper reads and writes the real tables.
"""

from __future__ import annotations

from .helpers import Drained, assert_enqueued, drain, eager, enqueued
from .schema import TestDatabase, test_database_url

__all__ = [
    "Drained",
    "TestDatabase",
    "assert_enqueued",
    "drain",
    "eager",
    "enqueued",
    "test_database_url",
]
