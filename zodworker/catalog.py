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
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from enum import Enum
from typing import Any, ClassVar, Final, Generic, TypedDict, TypeVar, overload

import msgspec
import pydantic

from .errors import CatalogError, PayloadValidationError, UnknownOptionError
from .job import JobKeyMode, JobSpec, check_key_mode

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

TaskHandler = Callable[[P, Any], Any]
"""``handler(payload, helpers)``: async or plain; gets the validated payload object."""


class PayloadCodec(Generic[P]):
    """Validates payloads of one type and converts them to and from JSON-ready values."""

    __slots__ = ("_adapter", "_dump", "_dump_many", "_kind", "_validate", "_validate_many", "type")

    def __init__(self, payload_type: type[P]) -> None:
        self.type = payload_type
        if isinstance(payload_type, type) and issubclass(payload_type, msgspec.Struct):
            self._kind = "msgspec"
            self._adapter: pydantic.TypeAdapter[P] | None = None
        else:
            self._kind = "pydantic"
            self._adapter = adapter = pydantic.TypeAdapter(payload_type)
            # the compiled validator and serializer, without TypeAdapter's per-call wrapping
            self._validate = adapter.validator.validate_python
            self._dump = adapter.serializer.to_python
            many = pydantic.TypeAdapter(list[payload_type])  # type: ignore[valid-type]
            self._validate_many = many.validator.validate_python
            self._dump_many = many.serializer.to_python

    def validate(self, value: Any, *, task: str) -> P:
        """``value`` (an instance, or JSON-like data) as a valid payload; else raise
        :class:`PayloadValidationError` naming the task and the offending field."""
        try:
            if self._kind == "msgspec":
                if isinstance(value, self.type):
                    # re-check constraints of a constructed Struct by a round trip
                    return msgspec.convert(msgspec.to_builtins(value), self.type)
                return msgspec.convert(value, self.type)
            if isinstance(value, pydantic.BaseModel):
                # instances are taken as they are by default; they may have been built with
                # model_construct() or mutated since, so check their data again
                value = value.model_dump()
            valid: P = self._validate(value)
            return valid
        except pydantic.ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first["loc"]) or "payload"
            raise PayloadValidationError(task, field, first["msg"], exc.errors()) from exc
        except msgspec.ValidationError as exc:
            message = str(exc)
            field = message.rsplit("at `$.", 1)[-1].rstrip("`") if "at `$." in message else ""
            raise PayloadValidationError(task, field or "payload", message, []) from exc

    def to_json(self, payload: P) -> Any:
        """JSON-ready builtins for storing ``payload``."""
        if self._kind == "msgspec":
            return msgspec.to_builtins(payload)
        return self._dump(payload, mode="json")

    def validate_many(self, values: list[Any], *, task: str) -> tuple[list[P], list[Any]]:
        """Each of ``values`` validated as :meth:`validate` does, and its JSON-ready form
        (:meth:`to_json`), in one call each; on any invalid value the error :meth:`validate`
        raises for the first one."""
        try:
            if self._kind == "msgspec":
                data = [msgspec.to_builtins(v) if isinstance(v, self.type) else v for v in values]
                valid: list[P] = msgspec.convert(data, list[self.type])  # type: ignore[name-defined]
                return valid, msgspec.to_builtins(valid)
            data = [v.model_dump() if isinstance(v, pydantic.BaseModel) else v for v in values]
            valid = self._validate_many(data)
            return valid, self._dump_many(valid, mode="json")
        except (pydantic.ValidationError, msgspec.ValidationError):
            for value in values:  # raises the first one's error, as one by one would
                self.validate(value, task=task)
            raise


_UNSET: Any = object()


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskDef(Generic[P]):
    """One task: its payload type, its handler and its default job options.

    ``queue_name`` and ``job_key`` may be callables of the validated payload. ``identifier``
    is filled in when the task is placed in a catalog (the attribute or keyword name)."""

    payload: type[P]
    handler: TaskHandler[P] | None = None
    queue_name: str | Callable[[P], str] | None = None
    job_key: str | Callable[[P], str] | None = None
    job_key_mode: JobKeyMode | None = None
    priority: int | None = None
    max_attempts: int | None = None
    flags: Sequence[str] | None = None
    timeout: float | None = None
    identifier: str = ""
    codec: PayloadCodec[P] = _UNSET

    def __post_init__(self) -> None:
        if self.codec is _UNSET:
            object.__setattr__(self, "codec", PayloadCodec(self.payload))
        check_key_mode(self.job_key_mode)

    def named(self, identifier: str) -> TaskDef[P]:
        """This task under ``identifier``."""
        return replace(self, identifier=identifier)

    def __call__(self, payload: P, /) -> P:
        """``payload`` validated against this task's payload type (raises
        :class:`~zodworker.errors.PayloadValidationError`). Being callable with the payload
        type is also what lets mypy name the expected model when ``client.enqueue`` gets a
        payload of the wrong type."""
        return self.codec.validate(payload, task=self.identifier)


def task(
    payload: type[P],
    handler: TaskHandler[P] | None = None,
    *,
    queue_name: str | Callable[[P], str] | None = None,
    job_key: str | Callable[[P], str] | None = None,
    job_key_mode: JobKeyMode | None = None,
    priority: int | None = None,
    max_attempts: int | None = None,
    flags: Sequence[str] | None = None,
    timeout: float | None = None,
) -> TaskDef[P]:
    """Declare a task (see :class:`TaskDef`). ``handler`` may be left out for tasks this
    process only enqueues."""
    return TaskDef(
        payload=payload,
        handler=handler,
        queue_name=queue_name,
        job_key=job_key,
        job_key_mode=job_key_mode,
        priority=priority,
        max_attempts=max_attempts,
        flags=flags,
        timeout=timeout,
    )


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


def _resolve(catalog: TaskCatalog, task: object) -> TaskDef[Any]:
    if not isinstance(task, (TaskDef, str)):
        raise CatalogError(
            f"expected a task of the catalog (Catalog.name) or its identifier, not {task!r}"
        )
    return catalog.resolve(task)


def _job(spec: TaskDef[Any], valid: Any, payload: Any) -> JobSpec:
    """The job for a validated payload with the task's defaults (only queue_name and
    job_key may be callables of the payload; the rest are values)."""
    queue, key = spec.queue_name, spec.job_key
    return JobSpec(
        identifier=spec.identifier,
        payload=payload,
        queue_name=queue(valid) if callable(queue) else queue,
        max_attempts=spec.max_attempts,
        job_key=key(valid) if callable(key) else key,
        priority=spec.priority,
        flags=spec.flags,
    )


def build_specs(
    catalog: TaskCatalog, items: Sequence[tuple[object, Any]]
) -> list[tuple[JobSpec, JobKeyMode | None]]:
    """:func:`build_spec` with no options for each ``(task, payload)``, validating the
    payloads of each task together (see the module docs)."""
    looked_up: dict[object, TaskDef[Any]] = {}  # by name, or by id of a TaskDef
    groups: dict[str, tuple[TaskDef[Any], list[int]]] = {}
    specs: list[TaskDef[Any]] = []
    for index, (task, _) in enumerate(items):
        by = task if isinstance(task, str) else id(task)
        spec = looked_up.get(by)
        if spec is None:
            spec = looked_up[by] = _resolve(catalog, task)
        specs.append(spec)
        groups.setdefault(spec.identifier, (spec, []))[1].append(index)
    built: list[tuple[JobSpec, JobKeyMode | None]] = [None] * len(items)  # type: ignore[list-item]
    try:
        for spec, indices in groups.values():
            valid, payloads = spec.codec.validate_many(
                [items[i][1] for i in indices], task=spec.identifier
            )
            mode = spec.job_key_mode
            for i, one, payload in zip(indices, valid, payloads, strict=True):
                built[i] = (_job(spec, one, payload), mode)
    except PayloadValidationError:
        for (_, payload), spec in zip(items, specs, strict=True):  # the first one's error
            spec.codec.validate(payload, task=spec.identifier)
        raise
    return built


def build_spec(
    catalog: TaskCatalog, task: object, payload: Any, options: EnqueueOptions
) -> tuple[JobSpec, JobKeyMode | None]:
    """The job to add for ``payload`` of ``task``, and its key mode (see the module docs)."""
    spec = _resolve(catalog, task)
    valid = spec.codec.validate(payload, task=spec.identifier)
    job = _job(spec, valid, spec.codec.to_json(valid))
    mode = spec.job_key_mode
    if not options:  # the common case, e.g. batches
        return job, mode
    for name, value in options.items():
        if value is NOT_GIVEN:
            continue
        if name == "job_key_mode":
            mode = value  # type: ignore[assignment]
        elif name in _OPTION_NAMES:
            setattr(job, name, value)
        else:
            raise UnknownOptionError(
                name,
                f"enqueue() got an unexpected option {name!r}; options are "
                + ", ".join(sorted(EnqueueOptions.__annotations__)),
            )
    return job, mode
