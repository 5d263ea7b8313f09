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


OWN_PREFIX = "_zodworker"


def graphile_objects(snap: dict[str, Any]) -> dict[str, Any]:
    """``snap`` without zodworker's own objects (named ``_zodworker*``), i.e. the part of the
    schema that must match graphile-worker's exactly."""
    return {
        section: (
            {name: value for name, value in entries.items() if not name.startswith(OWN_PREFIX)}
            if isinstance(entries, dict) and section != "data" and section != "schema"
            else entries
        )
        for section, entries in snap.items()
    }
