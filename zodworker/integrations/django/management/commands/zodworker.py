"""``python manage.py zodworker``: run a worker with the project's settings.

It migrates the zodworker schema, runs the catalog's handlers (and recurring tasks) of
``settings.ZODWORKER`` on the project's database until SIGINT or SIGTERM (the first one
stops gracefully, a second one forcefully), then exits. ``--concurrency`` overrides the
setting.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from django.core.management.base import BaseCommand

from zodworker.integrations.django import make_client

__all__ = ["Command"]


class Command(BaseCommand):  # type: ignore[misc]  # Django ships no types
    help = "Run a zodworker worker with the project's settings (settings.ZODWORKER)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--concurrency", type=int, help="jobs run at the same time")

    def handle(self, *args: Any, **options: Any) -> None:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
        overrides = {"concurrency": options["concurrency"]} if options.get("concurrency") else {}
        client = make_client(**overrides)
        tasks = ", ".join(sorted(client.worker_tasks())) or "none"
        self.stdout.write(f"zodworker worker running tasks: {tasks}", ending="\n")
        self.stdout.flush()
        asyncio.run(client.run_until_stopped())
        self.stdout.write("zodworker worker stopped", ending="\n")
