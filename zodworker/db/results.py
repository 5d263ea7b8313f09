"""Reading results and history: where awaited jobs stand, and the history table's rows.

The rows are written by the worker pool with each outcome (``complete_recorded_jobs`` and
``record_failures`` in ``sql/queries/results.sql``); this module only reads them, as plans
(:mod:`zodworker.db.plans`) run by :class:`ResultStore` (async) and :class:`SyncResultStore`
(sync). :func:`listening` is the synchronous waiter's connection: LISTEN on the results
channel, ask, and sleep until a notification or the next poll.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Final, NamedTuple

import psycopg

from ..errors import JobSpecError
from . import sqlfiles
from .connect import application_name
from .plans import Call, Plan
from .rows import AsyncTarget, SyncTarget, fetch_sync, translate_errors
from .runner import AsyncRunner, SyncRunner

__all__ = [
    "RESULTS_CHANNEL",
    "HistoryRow",
    "ResultState",
    "ResultStore",
    "SyncResultStore",
    "listening",
    "plan_history",
    "plan_result_states",
]

RESULTS_CHANNEL: Final = "zodworker:result"
"""Where the pool announces finished jobs of tasks that keep results (comma-separated ids)."""


class ResultState(NamedTuple):
    """Where one job stands: its history row (``outcome`` ... ``attempts``, None when it has
    none) and its job row (``job_*``, None when the job is gone)."""

    job_id: int
    task: str | None
    outcome: str | None
    output: str | None
    """The output as JSON text."""
    last_error: str | None
    attempts: int | None
    job_attempts: int | None
    job_max_attempts: int | None
    job_last_error: str | None
    job_locked: bool | None


class HistoryRow(NamedTuple):
    """One row of the job history (see ``sql/zodworker/000007.sql``)."""

    job_id: int
    task: str
    queue_name: str | None
    key: str | None
    outcome: str
    payload: Any
    output: Any
    last_error: str | None
    attempts: int
    max_attempts: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime
    duration: float | None

    def as_dict(self) -> dict[str, Any]:
        """The row's fields by name (for JSON)."""
        return dict(self._asdict())


def _job_ids(ids: Sequence[int]) -> list[int]:
    if isinstance(ids, (str, bytes)) or not all(
        isinstance(i, int) and not isinstance(i, bool) for i in ids
    ):
        raise JobSpecError("job_id", "must be an integer job id (or a list of them)")
    return list(ids)


def plan_result_states(ids: Sequence[int]) -> Plan[list[ResultState]]:
    """Where each of the jobs ``ids`` stands."""
    rows = yield Call("result_states", {"ids": _job_ids(ids)}, rows="tuples")
    return [ResultState(*row) for row in rows]


_OUTCOMES: Final = ("success", "failed", "cancelled")


def plan_history(
    *,
    task: str | None = None,
    outcome: str | None = None,
    job_id: int | None = None,
    before: int | None = None,
    limit: int = 50,
) -> Plan[list[HistoryRow]]:
    """History rows, newest job first: of one task and/or outcome, or one job; ``before``:
    only jobs with a smaller id (the next page); at most ``limit`` (1-1000)."""
    if outcome is not None and outcome not in _OUTCOMES:
        raise JobSpecError("outcome", f"is {outcome!r}; use one of {', '.join(_OUTCOMES)}")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 1000:
        raise JobSpecError("limit", f"is {limit!r}; expected an integer from 1 to 1000")
    _job_ids([value for value in (job_id, before) if value is not None])
    params = {
        "task": task,
        "outcome": outcome,
        "job_id": job_id,
        "before": before,
        "limit": limit,
    }
    rows = yield Call("history", params, rows="tuples")
    return [HistoryRow(*row) for row in rows]


class ResultStore(AsyncRunner):
    """Results and history on a psycopg ``AsyncConnection`` or ``AsyncConnectionPool``."""

    __slots__ = ()

    async def states(self, target: AsyncTarget, ids: Sequence[int]) -> list[ResultState]:
        """Where each of the jobs ``ids`` stands."""
        return await self._run(target, plan_result_states(ids))

    async def history(self, target: AsyncTarget, **filters: Any) -> list[HistoryRow]:
        """History rows (see :func:`plan_history` for the filters)."""
        return await self._run(target, plan_history(**filters))


class SyncResultStore(SyncRunner):
    """:class:`ResultStore` for synchronous code."""

    __slots__ = ()

    def states(self, target: SyncTarget, ids: Sequence[int]) -> list[ResultState]:
        """Where each of the jobs ``ids`` stands."""
        return self._run(target, plan_result_states(ids))

    def history(self, target: SyncTarget, **filters: Any) -> list[HistoryRow]:
        """History rows (see :func:`plan_history` for the filters)."""
        return self._run(target, plan_history(**filters))


class Listening:
    """A connection LISTENing on the results channel (see :func:`listening`)."""

    __slots__ = ("conn",)

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn

    def wait(self, timeout: float) -> list[str]:
        """Payloads of the notifications that arrive within ``timeout`` seconds (returns at
        the first one)."""
        with translate_errors():
            return [
                note.payload for note in self.conn.notifies(timeout=max(timeout, 0.0), stop_after=1)
            ]


@contextmanager
def listening(conninfo: str) -> Iterator[Listening]:
    """A new autocommit connection to ``conninfo`` LISTENing on :data:`RESULTS_CHANNEL`;
    closed on leaving."""
    with translate_errors():
        kwargs: dict[str, Any] = {"autocommit": True, **application_name(conninfo, "results")}
        conn = psycopg.Connection.connect(conninfo, **kwargs)
    try:
        query = sqlfiles.server_query("listen", CHANNEL=RESULTS_CHANNEL)
        fetch_sync(conn, query, prepare=False)
        yield Listening(conn)
    finally:
        conn.close()
