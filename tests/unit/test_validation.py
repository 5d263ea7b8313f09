"""Property tests for job spec validation: valid specs pass, each kind of bad input is
rejected with the right field, and the limits match the database's constraints."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from zodworker import JobSpec, JobSpecError, PayloadEncodeError
from zodworker.codec import PayloadCodec
from zodworker.job import _check_fields, check_key_mode, check_spec, encode_payload

text_ok = st.text(min_size=1, max_size=128).filter(lambda s: "\x00" not in s)
aware = st.datetimes(timezones=st.sampled_from([UTC, timezone(timedelta(hours=-5))]))
# What JSON and PostgreSQL keep as given: no NUL characters, finite numbers.
storable_text = st.text().filter(lambda s: "\x00" not in s)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | storable_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(storable_text, inner, max_size=4),
    max_leaves=10,
)
lossy = st.sampled_from([float("nan"), float("inf"), -float("inf"), "a\x00b"])

valid_specs = st.builds(
    JobSpec,
    identifier=text_ok,
    payload=json_values,
    queue_name=st.none() | text_ok,
    run_at=st.none() | aware,
    max_attempts=st.none() | st.integers(1, 32767),
    job_key=st.none() | st.text(min_size=1, max_size=512).filter(lambda s: "\x00" not in s),
    priority=st.none() | st.integers(-32768, 32767),
    flags=st.none() | st.lists(text_ok, max_size=3),
)


@given(valid_specs)
def test_valid_specs_pass(spec: JobSpec) -> None:
    check_spec(spec)
    encode_payload(spec.payload)


# Near the edges of every limit, wrong types (bool is an int; str subclasses), NULs.
class _Text(str):
    pass


edgy_text = st.one_of(
    st.none(),
    st.just(""),
    st.text(max_size=3),
    st.integers(126, 130).map(lambda n: "q" * n),
    st.integers(510, 514).map(lambda n: "k" * n),
    st.just("a\x00b"),
    st.just(_Text("sub")),
    st.integers(),
)
edgy_int = st.one_of(
    st.none(),
    st.integers(-32770, -32766),
    st.integers(-2, 2),
    st.integers(32766, 32769),
    st.booleans(),
    st.just(1.0),
    st.just("5"),
)
quick_specs = st.builds(  # what the quick path looks at, all within limits
    JobSpec,
    identifier=text_ok,
    queue_name=st.none() | text_ok,
    job_key=st.none() | st.text(min_size=1, max_size=512).filter(lambda s: "\x00" not in s),
    priority=st.none() | st.integers(-32768, 32767),
    max_attempts=st.none() | st.integers(1, 32767),
)
edges = {
    "identifier": edgy_text,
    "queue_name": edgy_text,
    "job_key": edgy_text,
    "priority": edgy_int,
    "max_attempts": edgy_int,
    "run_at": st.none() | aware | st.datetimes(timezones=st.none()),
    "flags": st.none() | st.lists(text_ok | st.just(""), max_size=2),
}


@st.composite
def any_specs(draw: st.DrawFn) -> JobSpec:
    """A spec within limits but for one or two fields, which get a value near an edge."""
    spec = draw(quick_specs)
    for field in draw(st.lists(st.sampled_from(sorted(edges)), min_size=1, max_size=2)):
        spec = msgspec.structs.replace(spec, **{field: draw(edges[field])})
    return spec


def _verdict(check: Callable[[JobSpec, str], None], spec: JobSpec) -> str | None:
    try:
        check(spec, "")
    except JobSpecError as exc:
        return str(exc)
    return None


@given(any_specs())
@settings(max_examples=500)
def test_the_quick_path_agrees_with_the_field_by_field_check(spec: JobSpec) -> None:
    # check_spec answers the common case in one expression; whatever it accepts there, the
    # field-by-field check must accept too, and every refusal names the same field.
    assert _verdict(check_spec, spec) == _verdict(_check_fields, spec)


def _plant(payload: object, data: st.DataObject) -> tuple[object, str]:
    """``payload`` with NaN, an infinity or a NUL character planted somewhere in it, and the
    path to that place (``[1].key``...)."""
    bad = data.draw(lossy)
    path: list[str | int] = []
    container: object = payload
    while isinstance(container, (list, dict)) and container and data.draw(st.booleans()):
        key = data.draw(
            st.sampled_from(
                sorted(container) if isinstance(container, dict) else range(len(container))
            )
        )
        path.append(key)
        container = container[key]  # type: ignore[index]
    if isinstance(container, dict):
        container["planted"] = bad
        path.append("planted")
    elif isinstance(container, list):
        container.append(bad)
        path.append(len(container) - 1)
    else:
        payload, path = bad, []
    return payload, "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)


@given(json_values, st.data())
def test_a_value_json_or_postgresql_would_not_keep_is_refused_with_its_path(
    payload: object, data: st.DataObject
) -> None:
    """Plant NaN, an infinity or a NUL character somewhere in a valid payload: it is refused,
    and the error's field is the path that leads to it."""
    payload, path = _plant(payload, data)
    with pytest.raises(PayloadEncodeError) as info:
        encode_payload(payload)
    assert info.value.field == "payload" + path


class Loose(BaseModel):
    meta: Any = None


@given(json_values, st.data())
def test_the_typed_codec_keeps_what_its_json_dump_would_turn_into_null(
    payload: object, data: st.DataObject
) -> None:
    """In an ``Any`` field pydantic's JSON dump stores NaN and infinities as null by default:
    the codec's dump keeps them, so the encoder refuses them (and NUL characters) with the
    path, and it keeps every other value as it is."""
    codec = PayloadCodec(Loose)
    assert codec.to_json(codec.validate({"meta": payload}, task="t")) == {"meta": payload}
    assert codec.validate_many([Loose(meta=payload)], task="t")[1] == [{"meta": payload}]
    planted, path = _plant(payload, data)
    one = Loose(meta=planted)
    for dumped in (codec.to_json(one), codec.validate_many([one], task="t")[1][0]):
        with pytest.raises(PayloadEncodeError) as info:
            encode_payload(dumped)
        assert info.value.field == "payload.meta" + path


@given(st.integers().filter(lambda n: not -32768 <= n <= 32767))
def test_priority_outside_smallint_is_rejected(priority: int) -> None:
    with pytest.raises(JobSpecError) as info:
        check_spec(JobSpec(identifier="t", priority=priority))
    assert info.value.field == "priority"


@given(st.integers().filter(lambda n: not 1 <= n <= 32767))
def test_max_attempts_outside_range_is_rejected(max_attempts: int) -> None:
    with pytest.raises(JobSpecError) as info:
        check_spec(JobSpec(identifier="t", max_attempts=max_attempts))
    assert info.value.field == "max_attempts"


@given(
    st.sampled_from([("identifier", 128), ("queue_name", 128), ("job_key", 512)]),
    st.integers(1, 600),
)
def test_text_limits_match_the_schema(field_limit: tuple[str, int], extra: int) -> None:
    field, limit = field_limit
    kwargs = {"identifier": "t", field: "x" * limit}
    check_spec(JobSpec(**kwargs))  # exactly at the limit is fine
    kwargs[field] = "x" * (limit + extra)
    with pytest.raises(JobSpecError) as info:
        check_spec(JobSpec(**kwargs))
    assert info.value.field == field
    assert str(limit) in str(info.value)


@given(st.text().filter(lambda m: m not in {"replace", "preserve_run_at", "unsafe_dedupe"}))
def test_unknown_key_modes_are_rejected(mode: str) -> None:
    with pytest.raises(JobSpecError) as info:
        check_key_mode(mode)
    assert info.value.field == "job_key_mode"
    assert "preserve_run_at" in str(info.value)


@given(st.datetimes(timezones=st.none()))
def test_naive_run_at_is_rejected_with_a_fix(run_at: datetime) -> None:
    with pytest.raises(JobSpecError, match="timezone-aware"):
        check_spec(JobSpec(identifier="t", run_at=run_at))


@pytest.mark.parametrize("bad", [object(), {1j: 1}, float("inf") * 0j])
def test_unencodable_payloads_raise_payload_encode_error(bad: object) -> None:
    with pytest.raises(PayloadEncodeError) as info:
        encode_payload(bad)
    assert info.value.field == "payload"
