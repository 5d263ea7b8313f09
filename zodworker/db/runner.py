"""Executing plans: one way with ``await``, one way without.

A plan (:mod:`zodworker.db.plans`) validates its input, yields the statements to run as
:class:`~zodworker.db.plans.Call` objects and returns a result. :class:`AsyncRunner` and
:class:`SyncRunner` run the statements of a plan on a target (a connection, or a pool to
borrow one from) and hand each one's rows back. The producer store and the admin API are
built on them, so their async and sync faces share every line but the ``await``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any, Final, TypeVar

import msgspec
from psycopg import pq
from psycopg.rows import RowMaker

from ..errors import JobSpecError
from ..job import DEFAULT_SCHEMA, Job
from . import sqlfiles
from .plans import Call, Plan
from .rows import (
    AsyncConn,
    AsyncTarget,
    SyncConn,
    SyncTarget,
    borrow,
    borrow_sync,
    fetch,
    fetch_lazy,
    fetch_lazy_sync,
    fetch_sync,
    job_rows,
)

__all__ = ["AsyncRunner", "SyncRunner"]

R = TypeVar("R")
_JOB_ROWS: Final = job_rows()
_loads = msgspec.json.decode


def _job_states(cursor: Any) -> RowMaker[tuple[Job, str]]:
    """Rows of a job followed by its state (``admin_*`` listing queries)."""
    make = _JOB_ROWS(cursor)

    def job_and_state(values: Sequence[Any]) -> tuple[Job, str]:
        return make(values), values[19]

    return job_and_state


_NO_BLOCK: Final = contextlib.nullcontext()


def _outside(conn: AsyncConn | SyncConn) -> bool:
    """An autocommit connection outside a transaction: each statement would commit alone."""
    return bool(conn.autocommit) and conn.info.transaction_status == pq.TransactionStatus.IDLE


class _Runner:
    __slots__ = ("_schema",)

    def __init__(self, schema: str = DEFAULT_SCHEMA) -> None:
        if not isinstance(schema, str) or not schema:
            raise JobSpecError("schema", "must be a non-empty string")
        self._schema = schema

    @property
    def schema(self) -> str:
        """The schema this works on (sent only as a quoted identifier)."""
        return self._schema

    def _query(self, call: Call) -> bytes:
        return sqlfiles.query(call.query, self._schema)

    @staticmethod
    def _rows(call: Call) -> Any:
        if call.rows == "jobs":
            return _JOB_ROWS
        return _job_states if call.rows == "job_states" else None


class AsyncRunner(_Runner):
    """Runs plans on an ``AsyncConnection`` or an ``AsyncConnectionPool``."""

    __slots__ = ()

    async def _run(self, target: AsyncTarget, plan: Plan[R], *, atomic: bool = False) -> R:
        """Run ``plan``; ``atomic``: its statements in one transaction (one is opened only
        on an autocommit connection outside a transaction: otherwise they are in the
        caller's, or the borrowed connection's, already)."""
        try:
            call = next(plan)  # validates before anything else happens
        except StopIteration as done:
            result: R = done.value
            return result
        async with borrow(target) as conn:
            block: Any = conn.transaction() if atomic and _outside(conn) else _NO_BLOCK
            async with block:
                try:
                    while True:
                        call = plan.send(await self._execute(conn, call))
                except StopIteration as done:
                    result = done.value
                    return result

    async def _execute(self, conn: AsyncConn, call: Call) -> Sequence[Any]:
        rows = self._rows(call)
        if rows is None:
            return await fetch(conn, self._query(call), call.params)
        if call.bulk and rows is _JOB_ROWS:
            return await fetch_lazy(conn, self._query(call), call.params, rows, json_loads=_loads)
        loads = _loads if call.bulk else None
        return await fetch(
            conn, self._query(call), call.params, rows=rows, binary=True, json_loads=loads
        )


class SyncRunner(_Runner):
    """Runs plans on a ``Connection`` or a ``ConnectionPool``."""

    __slots__ = ()

    def _run(self, target: SyncTarget, plan: Plan[R], *, atomic: bool = False) -> R:
        try:
            call = next(plan)
        except StopIteration as done:
            result: R = done.value
            return result
        with borrow_sync(target) as conn:
            block: Any = conn.transaction() if atomic and _outside(conn) else _NO_BLOCK
            with block:
                try:
                    while True:
                        call = plan.send(self._execute(conn, call))
                except StopIteration as done:
                    result = done.value
                    return result

    def _execute(self, conn: SyncConn, call: Call) -> Sequence[Any]:
        rows = self._rows(call)
        if rows is None:
            return fetch_sync(conn, self._query(call), call.params)
        if call.bulk and rows is _JOB_ROWS:
            return fetch_lazy_sync(conn, self._query(call), call.params, rows, json_loads=_loads)
        loads = _loads if call.bulk else None
        return fetch_sync(
            conn, self._query(call), call.params, rows=rows, binary=True, json_loads=loads
        )
