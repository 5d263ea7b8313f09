"""The cron scheduler's statements (``sql/queries/cron.sql``): which items the schema knows,
registering new ones, and the exactly-once claim that adds an occurrence's jobs."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import msgspec

from . import sqlfiles
from .rows import AsyncTarget, borrow, fetch

__all__ = ["CronStore", "KnownItem"]

KnownItem = tuple[datetime, datetime | None]
"""(known_since, last_execution) of a cron identifier."""

_encode = msgspec.json.Encoder().encode


class CronStore:
    """Cron statements on one schema, run on ``target`` (a connection or a pool)."""

    __slots__ = ("_schema", "_target")

    def __init__(self, target: AsyncTarget, schema: str) -> None:
        self._target = target
        self._schema = schema

    async def known(self, identifiers: Sequence[str]) -> dict[str, KnownItem]:
        """The given identifiers the schema knows, with when each was first seen and when
        it last fired."""
        async with borrow(self._target) as conn:
            rows = await fetch(
                conn, sqlfiles.query("cron_known", self._schema), {"identifiers": identifiers}
            )
        return {row[0]: (row[1], row[2]) for row in rows}

    async def register(self, identifiers: Sequence[str], now: datetime) -> None:
        """Remember identifiers seen for the first time (they are not backfilled)."""
        params = {"identifiers": list(identifiers), "now": now}
        async with borrow(self._target) as conn:
            await fetch(conn, sqlfiles.query("cron_register", self._schema), params)

    async def schedule(self, ts: datetime, specs: Sequence[dict[str, Any]]) -> list[str]:
        """Claim ``ts`` for each spec's item and add the jobs of the claims this call won;
        return the identifiers it added jobs for (exactly once across schedulers)."""
        params = {"ts": ts, "specs": _encode(specs).decode()}
        async with borrow(self._target) as conn:
            rows = await fetch(conn, sqlfiles.query("cron_schedule", self._schema), params)
        return [row[0] for row in rows]
