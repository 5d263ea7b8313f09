"""Enqueue typed jobs and run them in one asyncio script, no web framework.

    DATABASE_URL=postgresql://... python examples/plain_script.py

With no DATABASE_URL it uses the embedded PostgreSQL (``pip install 'zodworker[embedded]'``).
The handlers only record what they were given; the script waits (up to a deadline) until
every job it enqueued has run, prints them, and stops the worker.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections import Counter
from pathlib import Path

from pydantic import BaseModel

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for the catalog package

from catalog import (
    DeliverEvent,
    InvokeDispatcher,
    PerformRunExecution,
    Platform,
    StartRun,
    platform_with_handlers,
)
from zodworker import ZodWorker

DEADLINE_SECONDS = 30.0


async def main() -> None:
    ran: list[tuple[str, BaseModel]] = []

    def record(identifier: str, payload: BaseModel) -> None:
        ran.append((identifier, payload))

    client = ZodWorker(
        catalog=platform_with_handlers(record),
        database_url=os.environ.get("DATABASE_URL"),  # None: the embedded server
        concurrency=4,
        poll_interval=0.5,
    )
    async with client:  # initialize() ... stop()
        jobs = [
            # typed: mypy checks that the payload is a StartRun
            await client.enqueue(Platform.startRun, StartRun(id="run_1")),
            await client.enqueue(
                Platform.performRunExecution, PerformRunExecution(id="run_1")
            ),  # queue runs:run_1, key job_run:EXECUTE_JOB:run_1 from the catalog
            await client.enqueue(
                Platform.invokeDispatcher, InvokeDispatcher(id="disp_1", event_record_id="evr_1")
            ),
            # by name: the dict is validated against ScheduleEmail at run time
            await client.enqueue(
                "scheduleEmail",
                {"to": "ada@example.com", "subject": "Welcome", "template": "welcome"},
            ),
            *await client.enqueue_many(
                [(Platform.deliverEvent, DeliverEvent(id=f"evt_{i}")) for i in range(3)]
            ),
        ]
        for job in jobs:
            print(f"enqueued {job.task_identifier} job {job.id} (queue {job.queue_name})")

        deadline = time.monotonic() + DEADLINE_SECONDS
        while len(ran) < len(jobs):
            if time.monotonic() > deadline:
                missing = Counter(job.task_identifier for job in jobs)
                missing.subtract(identifier for identifier, _ in ran)
                raise SystemExit(
                    f"only {len(ran)} of {len(jobs)} jobs ran in {DEADLINE_SECONDS}s;"
                    f" not run: {', '.join(sorted(missing.elements()))}"
                )
            await asyncio.sleep(0.02)

    for identifier, payload in sorted(ran, key=lambda item: (item[0], item[1].model_dump_json())):
        print(f"ran {identifier} {type(payload).__name__} {payload.model_dump_json()}")
    print(f"all {len(ran)} jobs ran; worker stopped")


if __name__ == "__main__":
    asyncio.run(main())
