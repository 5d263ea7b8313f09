"""Payload codecs: validate payloads of one type and turn them into JSON-ready values.

A payload type is a pydantic model, a msgspec Struct, or any type pydantic can validate (a
dataclass, a TypedDict...). :class:`PayloadCodec` holds the compiled validator and serializer
of one type; the catalog (:mod:`zodworker.catalog`) gives each task one.

NaN and infinities are refused (:class:`~zodworker.errors.PayloadEncodeError`) by the
encoder every payload goes through: JSON has no such numbers. pydantic's JSON-mode dump
keeps them in typed ``float`` fields but by default turns them into ``null`` inside ``Any``
(and ``object``) fields, out of the encoder's sight; the codec's serializer is built with
``ser_json_inf_nan="constants"``, which keeps them there too, so that they are refused alike.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

import msgspec
import pydantic
import pydantic_core

from .errors import PayloadValidationError

__all__ = ["PayloadCodec"]

P = TypeVar("P")


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
            self._dump = _serializer(adapter)
            many = pydantic.TypeAdapter(list[payload_type])  # type: ignore[valid-type]
            self._validate_many = many.validator.validate_python
            self._dump_many = _serializer(many)

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


def _serializer(adapter: pydantic.TypeAdapter[Any]) -> Any:
    """The adapter's compiled ``to_python``, keeping NaN and infinities everywhere (see the
    module docs)."""
    config = pydantic_core.CoreConfig(ser_json_inf_nan="constants")
    return pydantic_core.SchemaSerializer(adapter.core_schema, config).to_python
