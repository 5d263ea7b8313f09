"""``zodworker run`` and ``zodworker demo``: load tasks and crontab, then run the service.

Tasks come from ``--tasks DIR`` (default ``./tasks`` when it exists; one module per task
identifier, each defining ``task``) and/or ``--app module:object``: a ``ZodWorker`` (its
catalog's handlers, with payload validation, and its recurring tasks), a ``TaskCatalog``,
a mapping of identifiers to handlers, or a callable returning one of these. ``--watch``
reloads changed task modules and an edited crontab. Bad tasks fail before the database is
touched.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..catalog import TaskCatalog
from ..client import ZodWorker
from ..config import MetricsOptions, WorkerOptions
from ..cron import CronItem, CronJob, cron_job
from ..db.connect import Database
from ..errors import TaskLoadError
from ..service import CrontabWatch, Service, TaskDirectoryWatch
from ..settings import Settings
from ..typed import catalog_task
from ..worker.pool import WorkerPool
from ..worker.tasks import Handler, Task, load_task_directory

__all__ = ["TaskSources", "load_app", "serve", "task_sources"]


class TaskSources:
    """The tasks to run: from the task directory and from ``--app``."""

    def __init__(
        self,
        from_directory: Mapping[str, Handler],
        from_app: Mapping[str, Handler | Task],
        directory: Path | None,
        cron: Sequence[CronJob] = (),
    ) -> None:
        self.from_directory = dict(from_directory)
        self.from_app = dict(from_app)
        self.directory = directory
        self.cron = list(cron)
        """Schedules that come with the app (a ZodWorker's recurring tasks)."""

    @property
    def tasks(self) -> dict[str, Handler | Task]:
        """Every task; ``--app`` wins over the directory."""
        return {**self.from_directory, **self.from_app}


def load_app(spec: str) -> tuple[dict[str, Handler | Task], list[CronJob]]:
    """Import ``module:object``: a ``ZodWorker`` (its catalog's handlers and recurring tasks),
    a ``TaskCatalog`` (its handlers), a task mapping, or a callable returning one of these.
    Returns the tasks and the schedules of recurring tasks."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise TaskLoadError(f"--app {spec!r}: expected MODULE:OBJECT, e.g. myapp.jobs:tasks")
    if "" not in sys.path and "." not in sys.path:
        sys.path.insert(0, "")  # like `python -m`, the current directory is importable
    try:
        target: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as exc:
        raise TaskLoadError(f"--app {spec!r}: cannot import it ({exc})") from exc
    if callable(target) and not isinstance(target, (Mapping, ZodWorker)):
        try:
            target = target()
        except TypeError as exc:
            raise TaskLoadError(
                f"--app {spec!r}: calling it without arguments failed ({exc}); point --app at a "
                "task mapping or at a callable that takes no arguments"
            ) from exc
    if isinstance(target, ZodWorker):
        return dict(target.worker_tasks()), target.recurring_schedules()
    if isinstance(target, TaskCatalog):
        return {name: catalog_task(t, "fail") for name, t in target.items() if t.handler}, []
    if not isinstance(target, Mapping):
        raise TaskLoadError(
            f"--app {spec!r}: is a {type(target).__name__}; expected a ZodWorker, a "
            "TaskCatalog or a mapping of task identifiers to handlers (or a callable "
            "returning one)"
        )
    return dict(target), []


def task_sources(settings: Settings) -> TaskSources:
    """The tasks ``tasks`` (``--tasks``, else ``./tasks``) and ``app`` provide (at least
    one task)."""
    directory: Path | None = settings["tasks"]
    if directory is None and Path("tasks").is_dir():
        directory = Path("tasks")
    from_dir = load_task_directory(directory) if directory is not None else {}
    app: str | None = settings["app"]
    from_app, cron = load_app(app) if app else ({}, [])
    if not from_dir and not from_app:
        raise TaskLoadError(
            "no tasks to run: create ./tasks/<identifier>.py defining `task`, or pass "
            "--tasks DIR or --app MODULE:OBJECT"
        )
    return TaskSources(from_dir, from_app, directory, cron)


async def serve(
    database: Database,
    options: WorkerOptions,
    sources: TaskSources,
    cron_items: list[CronItem],
    *,
    once: bool = False,
    watch: bool = False,
    crontab: CrontabWatch | None = None,
    metrics: MetricsOptions | None = None,
) -> int:
    """Run the worker (and cron) on ``database`` until a signal stops it; the exit code."""
    tasks = sources.tasks
    if once:
        pool = WorkerPool(tasks, replace(options, migrate=False), database=database, once=True)
        await pool.start()
        await pool.wait()
        return 0
    task_directory = None
    if watch and sources.directory is not None:
        task_directory = TaskDirectoryWatch(sources.directory, sources.from_app)
    service = Service(
        database,
        options=options,
        tasks=tasks,
        cron=[cron_job(item) for item in cron_items] + sources.cron,
        crontab=crontab if watch else None,
        task_directory=task_directory,
        metrics=metrics,
    )
    await service.start()
    service.handle_signals()
    assert service.pool is not None
    print(
        f"worker {service.pool.pool_id} running tasks {', '.join(sorted(tasks))}; Ctrl-C to stop",
        flush=True,
    )
    await service.wait()
    print("worker stopped", flush=True)
    return service.exit_code
