"""The worker layer: run jobs' handlers, fed and reported through ``zodworker.db``.

::

    pool         WorkerPool: composes the parts below; start/stop/wait, stats(), shutdown()
    local_queue  the fetch loop and buffer: wake-ups, polling, TTL (handed fetch/give_back)
    executor     one job -> one Outcome (timeout, cancellation, batch partial failure)
    completer    outcomes -> batched complete / fail / return writes, job events
    listener     LISTEN jobs:insert / worker:migrate, reconnecting (calls nudge)
    lease        heartbeats and reaping of dead pools
    maintenance  periodic housekeeping (the 4-hour stale-lock sweep, cleanup, metrics)
    helpers      JobHelpers and AbortSignal, given to every handler
    threads      daemon threads for plain (sync) handlers
    tasks        task lists and task directories; watch: reloading a directory on change
    signals      SIGINT/SIGTERM: graceful, then forceful shutdown

It imports the database layer and the vocabulary, never ``zodworker.cron`` or the face.
"""

from __future__ import annotations

from .helpers import AbortSignal, JobHelpers
from .pool import PoolStats, WorkerPool
from .tasks import Handler, Task, load_task_directory

__all__ = [
    "AbortSignal",
    "Handler",
    "JobHelpers",
    "PoolStats",
    "Task",
    "WorkerPool",
    "load_task_directory",
]
