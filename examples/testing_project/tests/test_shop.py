"""The shop's tasks, tested with zodworker's pytest plugin against real PostgreSQL."""

from __future__ import annotations

import pytest
from shop import SENT, Charge, Email, Receipt, Shop, sign_up

from zodworker import JobFailed
from zodworker.testing import TestDatabase, assert_enqueued, drain, eager, enqueued

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_sign_up_enqueues_a_welcome_email(zodworker_db: TestDatabase) -> None:
    async with zodworker_db.client(Shop()) as client:
        await sign_up(client, "ada@example.com")
        await assert_enqueued(client, Shop.sendEmail, payload={"to": "ada@example.com"})
        await assert_enqueued(
            client,
            Shop.sendEmail,
            payload=Email(to="ada@example.com", subject="welcome"),
            queue_name="emails",
            count=1,
        )
        drained = await drain(client)
    assert [job.task_identifier for job in drained.succeeded] == ["sendEmail"]
    assert "ada@example.com" in SENT


async def test_a_charge_sends_its_receipt_and_returns_it(zodworker_db: TestDatabase) -> None:
    async with zodworker_db.client(Shop()) as client:
        handle = await client.enqueue(Shop.charge, Charge(customer="bob@example.com", cents=500))
        drained = await drain(client)  # runs the charge, then the email it added
        assert [job.task_identifier for job in drained.succeeded] == ["charge", "sendEmail"]
        assert await handle.result(timeout=5) == Receipt(customer="bob@example.com", cents=500)
        assert await enqueued(client, Shop.sendEmail) == []  # ran and gone


async def test_a_failing_charge_fails_for_good(zodworker_db: TestDatabase) -> None:
    async with zodworker_db.client(Shop()) as client:
        handle = await client.enqueue(Shop.charge, Charge(customer="eve@example.com", cents=0))
        drained = await drain(client)
        [(job, error)] = drained.failed
        assert job.id == handle.id and "cannot charge 0 cents" in str(error)
        with pytest.raises(JobFailed, match="cannot charge 0 cents"):
            await handle.result(timeout=5)
        [left] = await enqueued(client, Shop.charge)  # stays, out of attempts
        assert left.attempts == left.max_attempts


async def test_eager_runs_each_job_as_it_is_enqueued(zodworker_db: TestDatabase) -> None:
    async with zodworker_db.client(Shop()) as client:
        with eager(client) as runs:
            await sign_up(client, "eager@example.com")
            assert "eager@example.com" in SENT  # already ran
        assert [len(run.succeeded) for run in runs] == [1]


async def test_a_wrong_assertion_says_what_is_there(zodworker_db: TestDatabase) -> None:
    async with zodworker_db.client(Shop()) as client:
        await sign_up(client, "ada@example.com")
        with pytest.raises(AssertionError, match="found 0; the table holds 1") as wrong:
            await assert_enqueued(client, Shop.sendEmail, payload={"to": "bob@example.com"})
        assert "'to': 'ada@example.com'" in str(wrong.value)
