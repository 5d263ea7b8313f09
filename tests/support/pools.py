"""Worker options for pools that tests run in their own process."""

from __future__ import annotations

from typing import Any

from zodworker import WorkerOptions

__all__ = ["pool_options"]


def pool_options(url: str, **overrides: Any) -> WorkerOptions:
    """Options for an in-process test pool on ``url`` (already migrated): no signal handlers,
    no stale-lock sweep, short poll, heartbeat and lease; ``overrides`` win."""
    settings: dict[str, Any] = {
        "connection": url,
        "handle_signals": False,
        "migrate": False,
        "poll_interval": 0.05,
        "heartbeat_interval": 0.1,
        "recovery_timeout": 0.5,
        "sweep_stale_locks": False,
    }
    return WorkerOptions(**{**settings, **overrides})
