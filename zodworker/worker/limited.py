"""Which jobs a fetch takes: limited ones first while there may be room, then the rest.

Jobs under limits (:mod:`zodworker.limits`) carry the flag ``zw:limited``; the plain fetch
forbids that flag, so its statement and cost are those of a pool without limits. The
limited fetch (keys least recently served first, every limit with room) runs first while
it is *armed*, and asks only for the slots waiting (a buffered job would hold a slot of
its limit without running). It disarms when it finds fewer jobs than asked, and is armed
again by

* a notification on ``zodworker:limits`` (limited jobs added, slots freed anywhere, a
  limit changed: :meth:`LimitedFetch.arm`, with a nudge of the local queue),
* the moment a full rate window has room again (asked of the database when it disarms),
* ``poll_interval`` after it disarmed (a lost notification costs at most that). That look
  is never on the way of plain jobs: the fetch that finds it due runs the plain statement
  first, and when that found jobs it hands them out and arms the next fetch (a wake-up)
  instead, so a job announced by a notification never waits for it.

So a pool that never sees limited jobs pays one limited fetch per poll interval.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Final

from ..job import Job
from ..limits import LIMITED_FLAG

__all__ = ["LimitedFetch"]

Fetch = Callable[[list[int], list[str], int], Awaitable[Sequence[Job]]]
_LATE: Final = 0.002  # wake this long after the window opens: the database's clock rules


class LimitedFetch:
    """The fetch the local queue is handed (see the module docs)."""

    def __init__(
        self,
        *,
        plain: Fetch,
        limited: Fetch,
        next_room: Callable[[], Awaitable[float | None]],
        idle_slots: Callable[[], int],
        nudge: Callable[[], None],
        poll_interval: float,
        logger: logging.Logger,
    ) -> None:
        self._plain = plain
        self._limited = limited
        self._next_room = next_room
        self._idle_slots = idle_slots
        self._nudge = nudge
        self._poll_interval = poll_interval
        self._logger = logger
        self._armed = True
        self._arms = 0  # times armed: a disarm does not undo an arm that came meanwhile
        self._disarmed_at = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._asking: asyncio.Future[None] | None = None  # when a rate window opens
        self._forbidden: list[str] = []
        self._plain_forbidden = [LIMITED_FLAG]

    @property
    def armed(self) -> bool:
        """Whether the next fetch looks for limited jobs first."""
        return self._armed

    def arm(self) -> None:
        """Look for limited jobs at the next fetch."""
        self._armed = True
        self._arms += 1

    def wake(self) -> None:
        """Arm and fetch now."""
        self.arm()
        self._nudge()

    def close(self) -> None:
        """Forget a pending wake-up."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._asking is not None:
            self._asking.cancel()
            self._asking = None

    async def fetch(self, task_ids: list[int], forbidden: list[str], n: int) -> Sequence[Job]:
        """Up to ``n`` jobs: limited ones (while armed) for the idle slots, then plain."""
        if forbidden != self._forbidden:
            self._forbidden = list(forbidden)
            self._plain_forbidden = [*forbidden, LIMITED_FLAG]
        if self._armed:
            limited = await self._seek_limited(task_ids, forbidden, n)
            rest = n - len(limited)
            plain = await self._plain(task_ids, self._plain_forbidden, rest) if rest > 0 else ()
            if not limited:
                return plain
            return [*limited, *plain] if plain else limited
        plain = await self._plain(task_ids, self._plain_forbidden, n)
        if time.monotonic() - self._disarmed_at < self._poll_interval:
            return plain
        if plain:  # seek limited jobs in the next fetch, once these have been handed out
            self.wake()
            return plain
        self.arm()
        return await self._seek_limited(task_ids, forbidden, n)

    async def _seek_limited(
        self, task_ids: list[int], forbidden: list[str], n: int
    ) -> Sequence[Job]:
        """Limited jobs for the idle slots; disarm when fewer came than were asked for."""
        arms = self._arms
        want = min(n, max(self._idle_slots(), 1))
        limited = await self._limited(task_ids, forbidden, want)
        if len(limited) < want and arms == self._arms:
            self._armed = False
            self._disarmed_at = time.monotonic()
            if self._asking is None or self._asking.done():  # not on the jobs' way
                self._asking = asyncio.ensure_future(self._wake_when_room())
        return limited

    async def _wake_when_room(self) -> None:
        try:
            delay = await self._next_room()
        except Exception as exc:  # the poll interval still covers it
            self._logger.warning("could not tell when a rate limit has room: %s", exc)
            return
        if delay is None:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_later(max(delay, 0.0) + _LATE, self.wake)
