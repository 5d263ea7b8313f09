"""Type-checked by tests/unit/test_typed_handles.py: mypy must reject the payload."""

from pydantic import BaseModel

from zodworker import Job, TaskCatalog, ZodWorker, task


class StartRun(BaseModel):
    id: str


class SendEmail(BaseModel):
    to: str


class Platform(TaskCatalog):
    startRun = task(StartRun, queue_name="executions")


async def enqueue(client: ZodWorker) -> Job:
    return await client.enqueue(Platform.startRun, SendEmail(to="a@b.c"))  # wrong payload type
