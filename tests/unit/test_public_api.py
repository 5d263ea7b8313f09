"""The public surface: explicit, sorted, complete and documented."""

from __future__ import annotations

import importlib
import inspect

import pytest

import zodworker

MODULES = [
    "errors",
    "job",
    "migrate",
    "store",
    "sqlfiles",
    "embedded",
    "cli",
    "events",
    "helpers",
    "options",
    "runner",
    "tasks",
    "worker_store",
]


def test_top_level_all_is_sorted_and_exact() -> None:
    assert zodworker.__all__ == sorted(zodworker.__all__, key=lambda n: (not n.isupper(), n))
    public = {
        name
        for name, value in vars(zodworker).items()
        if not name.startswith("_") and not inspect.ismodule(value) and name != "annotations"
    }
    assert set(zodworker.__all__) == public


@pytest.mark.parametrize("name", zodworker.__all__)
def test_every_public_name_is_documented(name: str) -> None:
    obj = getattr(zodworker, name)
    if inspect.isclass(obj) or inspect.isfunction(obj):
        assert inspect.getdoc(obj), f"{name} has no docstring"


@pytest.mark.parametrize("module", MODULES)
def test_each_module_declares_what_it_exports(module: str) -> None:
    mod = importlib.import_module(f"zodworker.{module}")
    assert mod.__doc__
    exported = mod.__all__
    assert exported == sorted(exported, key=lambda n: (not n.isupper(), n))
    for name in exported:
        assert hasattr(mod, name), f"zodworker.{module}.__all__ names missing {name}"


def test_errors_form_one_tree() -> None:
    for name in zodworker.__all__:
        obj = getattr(zodworker, name)
        if inspect.isclass(obj) and issubclass(obj, Exception):
            assert issubclass(obj, zodworker.ZodworkerError)
