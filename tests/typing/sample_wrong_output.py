"""Type-checked by tests/unit/test_typed_handles.py: mypy must reject using the result as
something other than the task's output type."""

from pydantic import BaseModel

from zodworker import TaskCatalog, ZodWorker, task


class Resize(BaseModel):
    url: str


class Resized(BaseModel):
    width: int


class Media(TaskCatalog):
    resize = task(Resize, output=Resized)


async def resize(client: ZodWorker) -> None:
    handle = await client.enqueue(Media.resize, Resize(url="https://example.com/a.png"))
    resized = await handle.result()
    print(resized.url)  # wrong: Resized has no url
