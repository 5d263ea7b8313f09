"""Typed task catalogs: which tasks exist, what their payloads look like, and their defaults.

::

    class Platform(TaskCatalog):
        startRun = task(StartRun, handler=start_run, queue_name="executions", max_attempts=13)
        performRunExecution = task(
            PerformRun, handler=perform, max_attempts=1,
            queue_name=lambda p: f"runs:{p.id}", job_key=lambda p: f"job_run:EXECUTE_JOB:{p.id}",
        )

    catalog = Platform()                               # or TaskCatalog(startRun=task(...), ...)
    await client.enqueue(Platform.startRun, StartRun(id="run_1"))   # checked by mypy
    await client.enqueue("startRun", {"id": "run_1"})               # checked at run time

A payload type is a pydantic model, a msgspec Struct, or any type pydantic can validate
(a dataclass, a TypedDict...). Payloads are validated when enqueued and again when run.

:func:`build_spec` is the one path from a task and a payload to a :class:`JobSpec`: look the
task up (an unknown name is a :class:`~zodworker.errors.CatalogError` listing close names),
validate the payload (:class:`~zodworker.errors.PayloadValidationError` naming the field), and
overlay the call's options on the task's defaults (an option not given keeps the default;
``None`` clears it; ``0`` stays ``0``). :func:`build_specs` does the same for a batch,
validating the payloads of each task in one call (about half the cost per job); a batch
with an invalid payload gets the error the first invalid item would get from
:func:`build_spec`.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from enum import Enum
from typing import Any, ClassVar, Final, TypedDict, TypeVar, overload

import msgspec

from .codec import PayloadCodec
from .errors import CatalogError, PayloadValidationError, UnknownOptionError
from .job import JobKeyMode, JobSpec
from .limits import Limit, check_limits
from .taskdef import TaskDef, task

__all__ = [
    "NOT_GIVEN",
    "EnqueueOptions",
    "NotGiven",
    "PayloadCodec",
    "TaskCatalog",
    "TaskDef",
    "build_spec",
    "build_specs",
    "task",
]

P = TypeVar("P")


class TaskCatalog(Mapping[str, TaskDef[Any]]):
    """A set of tasks by identifier. Declare it as a subclass with :func:`task` attributes,
    or pass tasks as keywords (``TaskCatalog(startRun=task(...))``); merge with ``|``."""

    _declared: ClassVar[dict[str, TaskDef[Any]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        declared = dict(getattr(cls, "_declared", {}))
        for name, value in list(vars(cls).items()):
            if isinstance(value, TaskDef):
                named = value.named(name)
                setattr(cls, name, named)
                declared[name] = named
        cls._declared = declared

    def __init__(self, **tasks: TaskDef[Any]) -> None:
        merged = dict(type(self)._declared)
        for name, spec in tasks.items():
            if not isinstance(spec, TaskDef):
                raise CatalogError(f"{name}: expected task(...), got {type(spec).__name__}")
            if name in merged:
                raise CatalogError(f"task {name!r} is declared twice")
            merged[name] = spec.named(name)
        self._tasks = merged

    def __getitem__(self, identifier: str) -> TaskDef[Any]:
        try:
            return self._tasks[identifier]
        except KeyError:
            close = difflib.get_close_matches(identifier, list(self._tasks), n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
            raise CatalogError(
                f"unknown task {identifier!r}{hint} (known: {', '.join(sorted(self._tasks))})"
            ) from None

    def __contains__(self, identifier: object) -> bool:
        return identifier in self._tasks

    def get(self, identifier: str, default: Any = None) -> Any:
        """The task named ``identifier``, or ``default``."""
        return self._tasks.get(identifier, default)

    def __iter__(self) -> Iterator[str]:
        return iter(self._tasks)

    def __len__(self) -> int:
        return len(self._tasks)

    def __or__(self, other: TaskCatalog) -> TaskCatalog:
        """Both catalogs' tasks; a task declared in both is an error."""
        both = set(self._tasks) & set(other._tasks)
        if both:
            raise CatalogError(f"tasks declared in both catalogs: {', '.join(sorted(both))}")
        merged = TaskCatalog()
        merged._tasks = {**self._tasks, **other._tasks}
        return merged

    @overload
    def resolve(self, task_or_name: TaskDef[P]) -> TaskDef[P]: ...
    @overload
    def resolve(self, task_or_name: str) -> TaskDef[Any]: ...
    def resolve(self, task_or_name: TaskDef[Any] | str) -> TaskDef[Any]:
        """The catalog's task for an identifier or a task declared in it."""
        if isinstance(task_or_name, TaskDef):
            found = self[task_or_name.identifier]
            if found.payload is not task_or_name.payload:
                raise CatalogError(f"task {task_or_name.identifier!r} is not from this catalog")
            return found
        return self[task_or_name]


class NotGiven(Enum):
    """The type of :data:`NOT_GIVEN`: "use the task's default", as opposed to ``None``."""

    NOT_GIVEN = "NOT_GIVEN"


NOT_GIVEN: Final = NotGiven.NOT_GIVEN

_OPTION_NAMES: Final = frozenset(
    {"queue_name", "run_at", "job_key", "priority", "max_attempts", "flags"}
)


class EnqueueOptions(TypedDict, total=False):
    """Per-call job options. One not given keeps the task's default; ``None`` clears it."""

    queue_name: str | NotGiven | None
    run_at: datetime | NotGiven | None
    job_key: str | NotGiven | None
    job_key_mode: JobKeyMode | NotGiven | None
    priority: int | NotGiven | None
    max_attempts: int | NotGiven | None
    flags: Sequence[str] | NotGiven | None
    limits: Sequence[Limit] | NotGiven | None
    """The limits this job is under instead of the task's (None: none)."""


def _resolve(catalog: TaskCatalog, task: object) -> TaskDef[Any]:
    if not isinstance(task, (TaskDef, str)):
        raise CatalogError(
            f"expected a task of the catalog (Catalog.name) or its identifier, not {task!r}"
        )
    return catalog.resolve(task)


_replace: Final = msgspec.structs.replace


def _job(spec: TaskDef[Any], valid: Any, payload: Any) -> JobSpec:
    """The job for a validated payload with the task's defaults (only queue_name and
    job_key may be callables of the payload; the rest are values)."""
    queue, key = spec.queue_name, spec.job_key
    if callable(queue) or callable(key):
        return _replace(
            spec.template,
            payload=payload,
            queue_name=queue(valid) if callable(queue) else queue,
            job_key=key(valid) if callable(key) else key,
        )
    return _replace(spec.template, payload=payload)


Built = tuple[JobSpec, JobKeyMode | None, tuple[Limit, ...]]
"""A job to add: its spec, its key mode and the limits it is under (keys computed)."""


def _bound(limits: Sequence[Limit], valid: Any) -> tuple[Limit, ...]:
    return tuple(limit.bound(valid) for limit in limits) if limits else ()


def build_specs(catalog: TaskCatalog, items: Sequence[tuple[object, Any]]) -> list[Built]:
    """:func:`build_spec` with no options for each ``(task, payload)``, validating the
    payloads of each task together (see the module docs)."""
    looked_up: dict[object, TaskDef[Any]] = {}  # by name, or by id of a TaskDef
    groups: dict[str, tuple[TaskDef[Any], list[int]]] = {}
    specs: list[TaskDef[Any]] = []
    for index, (wanted, _) in enumerate(items):
        by = wanted if isinstance(wanted, str) else id(wanted)
        spec = looked_up.get(by)
        if spec is None:
            spec = looked_up[by] = _resolve(catalog, wanted)
        specs.append(spec)
        groups.setdefault(spec.identifier, (spec, []))[1].append(index)
    built: list[Built] = [None] * len(items)  # type: ignore[list-item]
    try:
        for spec, indices in groups.values():
            valid, payloads = spec.codec.validate_many(
                [items[i][1] for i in indices], task=spec.identifier
            )
            mode, limits, template = spec.job_key_mode, spec.limits, spec.template
            if limits or callable(spec.queue_name) or callable(spec.job_key):
                for i, one, payload in zip(indices, valid, payloads, strict=True):
                    built[i] = (_job(spec, one, payload), mode, _bound(limits, one))
            else:  # the common case: a copy of the task's job with the payload, nothing else
                for i, payload in zip(indices, payloads, strict=True):
                    built[i] = (_replace(template, payload=payload), mode, ())
    except PayloadValidationError:
        for (_, payload), spec in zip(items, specs, strict=True):  # the first one's error
            spec.codec.validate(payload, task=spec.identifier)
        raise
    return built


def build_spec(catalog: TaskCatalog, task: object, payload: Any, options: EnqueueOptions) -> Built:
    """The job to add for ``payload`` of ``task``, its key mode and its limits (see the
    module docs)."""
    spec = _resolve(catalog, task)
    valid = spec.codec.validate(payload, task=spec.identifier)
    job = _job(spec, valid, spec.codec.to_json(valid))
    mode, limits = spec.job_key_mode, spec.limits
    if not options:  # the common case, e.g. batches
        return job, mode, _bound(limits, valid)
    for name, value in options.items():
        if value is NOT_GIVEN:
            continue
        if name == "job_key_mode":
            mode = value  # type: ignore[assignment]
        elif name == "limits":
            limits = check_limits(value or (), "limits")
        elif name in _OPTION_NAMES:
            setattr(job, name, value)
        else:
            raise UnknownOptionError(
                name,
                f"enqueue() got an unexpected option {name!r}; options are "
                + ", ".join(sorted(EnqueueOptions.__annotations__)),
            )
    return job, mode, _bound(limits, valid)
