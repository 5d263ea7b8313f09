"""Type-checked by tests/unit/test_typed_handles.py: must pass mypy --strict."""

from typing import Any

from pydantic import BaseModel

from zodworker import JobHandle, TaskCatalog, ZodWorker, task


class StartRun(BaseModel):
    id: str


class Platform(TaskCatalog):
    startRun = task(StartRun, queue_name="executions")


async def enqueue(client: ZodWorker) -> JobHandle[Any]:
    return await client.enqueue(Platform.startRun, StartRun(id="run_1"))


class Resized(BaseModel):
    width: int


class Media(TaskCatalog):
    resize = task(StartRun, output=Resized)


async def resize(client: ZodWorker) -> int:
    handle = await client.enqueue(Media.resize, StartRun(id="img_1"))
    resized = await handle.result(timeout=30)
    return resized.width  # typed: the task's output type
