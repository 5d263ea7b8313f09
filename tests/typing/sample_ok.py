"""Type-checked by tests/unit/test_typed_handles.py: must pass mypy --strict."""

from pydantic import BaseModel

from zodworker import Job, TaskCatalog, ZodWorker, task


class StartRun(BaseModel):
    id: str


class Platform(TaskCatalog):
    startRun = task(StartRun, queue_name="executions")


async def enqueue(client: ZodWorker) -> Job:
    return await client.enqueue(Platform.startRun, StartRun(id="run_1"))
