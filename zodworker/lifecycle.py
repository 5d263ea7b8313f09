"""One lifecycle idiom for every long-running part: structured services, a start handshake,
and a host for callers without a task group.

Every long-running part of zodworker (the worker pool and its loops, the cron scheduler, the
watchers, the composition that runs them) is a coroutine ``run(*, task_status)``: it opens
what it needs, calls ``task_status.started()`` once it is ready, runs until it is told to
stop, and closes what it opened on the way out, also when start-up fails. Its owner runs it
in an anyio task group with ``await task_group.start(part.run)``, so a start-up error
surfaces at that ``await`` and no task runs that nobody owns.

:class:`Host` is the bridge for callers who want ``await x.start()`` and ``await x.stop()``
without holding a task group (library users, ``ZodWorker.initialize``). It owns the single
task that runs the service and keeps the start/stop contract:

* ``start()`` is idempotent; it returns once the service is ready, or raises its start-up
  error (unwrapped from anyio's exception group);
* ``stop()`` before ``start()`` and ``stop()`` twice are fine, and ``stop()`` does not raise
  a start-up error again that ``start()`` already raised;
* ``wait()`` returns when the service has ended and raises the error it ended with.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, Literal

import anyio

__all__ = ["Host", "HostState", "single_error"]

HostState = Literal["new", "starting", "running", "stopped"]


def single_error(exc: BaseException) -> BaseException:
    """``exc`` without the exception groups around it when each holds one exception."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


class Host:
    """Runs ``run(task_status=...)`` in a task this object owns (see the module docs).

    ``request_stop`` is called by :meth:`stop`; it must make ``run`` wind down and return.
    """

    __slots__ = ("_ready", "_reported", "_request_stop", "_run", "_stop_requested", "_task")

    def __init__(
        self, run: Callable[..., Coroutine[Any, Any, None]], request_stop: Callable[[], None]
    ) -> None:
        self._run = run
        self._request_stop = request_stop
        self._task: asyncio.Task[None] | None = None
        self._ready: asyncio.Future[None] | None = None
        self._stop_requested = False
        self._reported: BaseException | None = None

    @property
    def state(self) -> HostState:
        """Where the service is in its life."""
        if self._task is None:
            return "stopped" if self._stop_requested else "new"
        if self._task.done():
            return "stopped"
        assert self._ready is not None
        return "running" if self._ready.done() else "starting"

    async def start(self) -> None:
        """Start the service (once) and wait until it is ready; raise its start-up error."""
        if self._task is None:
            if self._stop_requested:
                return  # stopped before it started: stays stopped
            loop = asyncio.get_running_loop()
            self._ready = loop.create_future()
            self._task = loop.create_task(self._host(self._ready))
        assert self._ready is not None
        await asyncio.wait({self._ready, self._task}, return_when=asyncio.FIRST_COMPLETED)
        if not self._ready.done():
            try:
                await self.wait()  # raises the start-up error
            except BaseException as exc:
                self._reported = exc
                raise

    async def _host(self, ready: asyncio.Future[None]) -> None:
        try:
            async with anyio.create_task_group() as group:
                await group.start(self._run)
                ready.set_result(None)
        except BaseException as exc:
            raise single_error(exc) from None

    async def stop(self) -> None:
        """Ask the service to stop and wait until it has; raise the error it ended with."""
        self._stop_requested = True
        if self._task is None:
            return
        if not self._task.done():
            self._request_stop()
        try:
            await self.wait()
        except BaseException as exc:
            if exc is not self._reported:
                raise

    async def wait(self) -> None:
        """Wait until the service has ended; raise the error it ended with, if any."""
        if self._task is None:
            return
        await asyncio.wait({self._task})
        if not self._task.cancelled():
            error = self._task.exception()
            if error is not None:
                raise error

    def done_callback(self, callback: Callable[[], Any]) -> None:
        """Call ``callback()`` once the hosting task has ended (it must have started)."""
        assert self._task is not None
        self._task.add_done_callback(lambda _: callback())
