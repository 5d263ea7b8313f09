"""The checked-in schema of a database migrated by the real graphile-worker 0.18."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

REFERENCE_PATH = (
    Path(__file__).resolve().parent.parent / "compat" / "graphile_worker_0_18_schema.json"
)


@functools.cache
def _load() -> str:
    return REFERENCE_PATH.read_text("utf-8")


def reference_schema() -> dict[str, Any]:
    """A fresh copy of the reference snapshot (see tests/support/regen_schema_snapshot.py)."""
    data: dict[str, Any] = json.loads(_load())
    return data
