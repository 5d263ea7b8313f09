"""Type-checked by tests/unit/test_typed_handles.py: mypy must reject the payload."""

from typing import Any

from pydantic import BaseModel

from zodworker import JobHandle, TaskCatalog, ZodWorker, task


class StartRun(BaseModel):
    id: str


class SendEmail(BaseModel):
    to: str


class Platform(TaskCatalog):
    startRun = task(StartRun, queue_name="executions")


async def enqueue(client: ZodWorker) -> JobHandle[Any]:
    return await client.enqueue(Platform.startRun, SendEmail(to="a@b.c"))  # wrong payload type
