"""mypy checks the payload type of ``client.enqueue(Catalog.task, payload)``."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

mypy_api = pytest.importorskip("mypy.api", reason="mypy is part of the dev extra")

SAMPLES = Path(__file__).resolve().parent.parent / "typing"


def check(name: str) -> tuple[str, int]:
    limit = sys.getrecursionlimit()  # mypy raises it for the whole process; put it back
    try:
        out, err, status = mypy_api.run(
            ["--strict", "--no-incremental", "--follow-imports=silent", str(SAMPLES / name)]
        )
    finally:
        sys.setrecursionlimit(limit)
    return out + err, status


def test_a_matching_payload_type_checks() -> None:
    out, status = check("sample_ok.py")
    assert status == 0, out


def test_a_wrong_payload_type_is_reported() -> None:
    out, status = check("sample_wrong_payload.py")
    assert status == 1, out
    assert "sample_wrong_payload.py:23: error" in out  # the wrong call, and only it
    assert "enqueue" in out
    assert out.count(": error") == 1
    assert "StartRun" in out  # the message names the model the task expects


def test_a_handle_result_has_the_tasks_output_type() -> None:
    out, status = check("sample_wrong_output.py")
    assert status == 1, out
    assert out.count(": error") == 1
    assert "sample_wrong_output.py:24: error" in out
    assert '"Resized" has no attribute "url"' in out
