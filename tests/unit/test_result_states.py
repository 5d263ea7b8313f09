"""What a job's state means for a result waiter (``zodworker.results.settle``), and how a
handler's return value is checked and kept (``output_encoder``, ``output_text``), as
properties over every combination of job row and history row."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel

from zodworker import JobFailed, OutputValidationError, ResultUnavailable
from zodworker.catalog import PayloadCodec
from zodworker.db.results import ResultState
from zodworker.results import PENDING, settle
from zodworker.typed import output_encoder
from zodworker.worker.executor import output_text

outcomes = st.sampled_from([None, "success", "failed", "cancelled"])
errors = st.sampled_from([None, "cancelled", "RuntimeError: boom", "JobCancelled: by an operator"])


@st.composite
def states(draw: st.DrawFn) -> ResultState:
    job_row = draw(st.booleans())
    outcome = draw(outcomes)
    max_attempts = draw(st.integers(1, 25))
    return ResultState(
        job_id=draw(st.integers(1, 2**40)),
        task="t",
        outcome=outcome,
        output=None if outcome != "success" else draw(st.sampled_from(['{"n": 1}', "null"])),
        last_error=draw(errors) if outcome in ("failed", "cancelled") else None,
        attempts=draw(st.integers(1, 25)) if outcome else None,
        job_attempts=draw(st.integers(0, max_attempts)) if job_row else None,
        job_max_attempts=max_attempts if job_row else None,
        job_last_error=draw(errors) if job_row else None,
        job_locked=draw(st.booleans()) if job_row else None,
    )


@given(states())
def test_a_state_settles_to_exactly_one_meaning(state: ResultState) -> None:
    settled = settle(state)
    job_row = state.job_attempts is not None
    if job_row and (state.job_locked or state.job_attempts < (state.job_max_attempts or 0)):
        assert settled is PENDING  # it may still run: whatever an old history row says
    elif job_row:
        assert isinstance(settled, JobFailed)  # used up and unlocked: failed for good
        assert settled.outcome in ("failed", "cancelled")
        if state.outcome in ("failed", "cancelled"):
            assert settled.outcome == state.outcome and settled.attempts == state.attempts
        elif state.job_last_error == "cancelled":
            assert settled.outcome == "cancelled"
    elif state.outcome is None:
        assert isinstance(settled, ResultUnavailable)
    elif state.outcome == "success":
        assert settled == state.output
    else:
        assert isinstance(settled, JobFailed)
        assert (settled.outcome, settled.last_error) == (state.outcome, state.last_error)
    assert job_row or settled is not PENDING  # a job that is gone is never waited on again


class Resized(BaseModel):
    url: str
    width: int


class Counted(msgspec.Struct):
    n: int


@given(st.text(max_size=20), st.integers(-(2**31), 2**31))
def test_a_valid_output_is_kept_as_its_json(url: str, width: int) -> None:
    encode = output_encoder(PayloadCodec(Resized), "resize")
    for value in (Resized(url=url, width=width), {"url": url, "width": width}):
        kept = output_text(encode(value))
        assert kept is not None
        assert Resized.model_validate_json(kept) == Resized(url=url, width=width)
    counted = output_encoder(PayloadCodec(Counted), "count")(Counted(n=width))
    assert msgspec.json.decode(bytes(counted), type=Counted) == Counted(n=width)


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydantic on the constructed model
@pytest.mark.parametrize(
    ("value", "field"),
    [
        ({"url": "a", "width": "wide"}, "output.width"),
        ({"width": 3}, "output.url"),
        (None, "output"),
        (Resized.model_construct(url="a", width="x"), "output.width"),  # type: ignore[arg-type]
    ],
)
def test_a_wrong_output_names_the_field(value: Any, field: str) -> None:
    with pytest.raises(OutputValidationError) as wrong:
        output_encoder(PayloadCodec(Resized), "resize")(value)
    assert wrong.value.field == field
    assert f"invalid output of task 'resize': {field}:" in str(wrong.value)


def test_plain_return_values_are_kept_when_json_can_hold_them() -> None:
    assert output_text({"a": [1, 2]}) == '{"a":[1,2]}'
    assert output_text(None) is None
    assert output_text(object()) is None  # not JSON: kept as no output, not an error


def test_a_handle_reads_as_its_job_and_copies_cleanly() -> None:
    import copy
    from datetime import UTC, datetime

    from zodworker import Job
    from zodworker.results import JobHandle

    now = datetime.now(UTC)
    job = Job(
        id=7,
        task_identifier="t",
        queue_name="q",
        payload={"a": 1},
        priority=0,
        run_at=now,
        attempts=0,
        max_attempts=25,
        last_error=None,
        created_at=now,
        updated_at=now,
        key="k",
        locked_at=None,
        locked_by=None,
        revision=0,
        flags=None,
        task_id=1,
        job_queue_id=None,
        is_available=True,
    )
    handle: JobHandle[object] = JobHandle(job, None)  # type: ignore[arg-type]
    assert (handle.id, handle.key, handle.queue_name, handle.payload) == (7, "k", "q", {"a": 1})
    with pytest.raises(AttributeError):
        handle.no_such_field  # noqa: B018
    assert copy.copy(handle).job is job  # copy looks up no dunder through the job


@pytest.mark.parametrize(
    ("output_type", "value", "field"),
    [
        (list[Any], [1.0, float("nan")], "output[1]"),
        (dict[str, Any], {"a": [float("inf")]}, "output.a[0]"),
        (float, -float("inf"), "output"),
    ],
)
def test_an_output_json_cannot_hold_is_refused_naming_its_place(
    output_type: Any, value: Any, field: str
) -> None:
    with pytest.raises(OutputValidationError) as info:
        output_encoder(PayloadCodec(output_type), "t")(value)
    assert info.value.field == field and "JSON cannot represent" in str(info.value)
