"""Daemon worker threads for plain (sync) task handlers.

A sync handler cannot be cancelled. When a forceful shutdown or a task timeout gives up on
one, its thread is abandoned: the job is failed at once and the thread's eventual result is
dropped. Daemon threads let the process exit even if such a thread never returns (standard
thread pools are joined at interpreter exit and would hang it). Threads are started on demand
whenever none is idle, so an abandoned thread never holds up the next job.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["DaemonThreads"]

T = TypeVar("T")

_Work = tuple["asyncio.Future[Any]", asyncio.AbstractEventLoop, Callable[..., Any], tuple[Any, ...]]


def _resolve(future: asyncio.Future[Any], value: Any, error: BaseException | None) -> None:
    if future.done():  # abandoned: nobody waits for this result any more
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)


class DaemonThreads:
    """Runs functions in daemon threads and awaits their results from the event loop."""

    def __init__(self, name: str = "zodworker-task") -> None:
        self._name = name
        self._work: queue.SimpleQueue[_Work | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0
        self._started = 0

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` in a thread. Cancelling the caller abandons the thread."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        with self._lock:
            if self._idle:
                self._idle -= 1
            else:
                self._started += 1
                threading.Thread(
                    target=self._serve, name=f"{self._name}-{self._started}", daemon=True
                ).start()
        self._work.put((future, loop, fn, args))
        return await future

    def _serve(self) -> None:
        while True:
            item = self._work.get()
            if item is None:
                return
            future, loop, fn, args = item
            try:
                value, error = fn(*args), None
            except BaseException as exc:  # handed to the awaiting coroutine
                value, error = None, exc
            try:
                loop.call_soon_threadsafe(_resolve, future, value, error)
            except RuntimeError:  # the loop has closed; nobody is waiting
                return
            with self._lock:
                self._idle += 1

    def close(self) -> None:
        """Let idle threads exit (busy ones exit when their function returns)."""
        with self._lock:
            idle, self._idle = self._idle, 0
        for _ in range(idle):
            self._work.put(None)
