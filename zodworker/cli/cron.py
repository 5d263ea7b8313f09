"""``zodworker cron list``, and where the command line finds its crontab."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from ..cron import CronItem
from ..settings import Settings

__all__ = ["crontab_path", "print_cron_list"]


def crontab_path(settings: Settings) -> Path | None:
    """The ``crontab`` setting (``--crontab FILE``), else ``./crontab`` when it exists,
    else None."""
    path: Path | None = settings["crontab"]
    if path is None and Path("crontab").is_file():
        path = Path("crontab")
    return path


def print_cron_list(items: list[CronItem], count: int) -> None:
    """Print each item and its next ``count`` runs."""
    if not items:
        print("no cron items (pass --crontab FILE or create ./crontab)")
        return
    now = datetime.now(UTC)
    for item in items:
        zone = f" ({item.tz})" if item.tz else ""
        print(f"{item.identifier}: {item.schedule.expression}{zone} -> {item.task}")
        for when in item.next_runs(now, count):
            print(f"  {when.isoformat()}")
