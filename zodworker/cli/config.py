"""``zodworker config``: the effective settings of ``run``, each with where it came from,
as an aligned table or ``--json``. The settings are validated first (worker and metrics
options are built from them), so a bad value fails here as it would at start-up."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..settings import SETTINGS, Settings

__all__ = ["print_config"]


def _text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def print_config(settings: Settings, *, as_json: bool) -> None:
    """Validate ``settings`` and print them."""
    settings.worker_options()
    settings.metrics_options()
    file = None if settings.file is None else str(settings.file)
    if as_json:
        shown = {
            s.name: {
                "value": str(v) if isinstance(v := settings.shown(s.name), Path) else v,
                "source": settings.source(s.name),
                "env": s.env,
                "flags": list(s.flags),
            }
            for s in SETTINGS
        }
        print(json.dumps({"file": file, "settings": shown}, indent=2))
        return
    print(f"config file: {file or 'none (no --config, ./zodworker.toml or [tool.zodworker])'}")
    rows = [(s.name, _text(settings.shown(s.name)), settings.source(s.name)) for s in SETTINGS]
    widths = [max(len(row[i]) for row in [("setting", "value", "source"), *rows]) for i in range(2)]
    print(f"{'setting':<{widths[0]}}  {'value':<{widths[1]}}  source")
    for name, value, source in rows:
        print(f"{name:<{widths[0]}}  {value:<{widths[1]}}  {source}")
