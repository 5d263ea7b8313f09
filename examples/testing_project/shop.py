"""A small application with zodworker tasks, tested in ``tests/`` with zodworker's pytest
plugin (see README.md next to this file)."""

from __future__ import annotations

from pydantic import BaseModel

from zodworker import JobHelpers, PermanentFailure, TaskCatalog, ZodWorker, task

SENT: list[str] = []


class Email(BaseModel):
    to: str
    subject: str


class Charge(BaseModel):
    customer: str
    cents: int


class Receipt(BaseModel):
    customer: str
    cents: int


async def send_email(payload: Email, helpers: JobHelpers) -> None:
    SENT.append(payload.to)


async def charge(payload: Charge, helpers: JobHelpers) -> Receipt:
    if payload.cents <= 0:
        raise PermanentFailure(f"cannot charge {payload.cents} cents")
    await helpers.add_job("sendEmail", {"to": payload.customer, "subject": "receipt"})
    return Receipt(customer=payload.customer, cents=payload.cents)


class Shop(TaskCatalog):
    sendEmail = task(Email, send_email, queue_name="emails")
    charge = task(Charge, charge, output=Receipt)


async def sign_up(client: ZodWorker, email: str) -> None:
    """What the web app does when someone signs up."""
    await client.enqueue(Shop.sendEmail, Email(to=email, subject="welcome"))
