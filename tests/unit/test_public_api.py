"""The public surface: explicit, grouped by tier, sorted within a tier, complete and
documented; every module declares what it exports."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from pathlib import Path

import pytest

import zodworker

ROOT = Path(zodworker.__file__).parent
TIERS = ("typed client", "worker", "database", "errors")
MODULES = sorted(
    info.name
    for info in pkgutil.walk_packages(zodworker.__path__, "zodworker.")
    if not info.name.endswith("__main__")
)


def _sort_key(name: str) -> tuple[bool, str]:
    return (not name.isupper(), name)


def tiers() -> dict[str, list[str]]:
    """The names of ``zodworker.__all__`` under each ``# tier`` comment of its source."""
    source = (ROOT / "__init__.py").read_text()
    block = source[source.index("__all__ = [") : source.index("]", source.index("__all__ = ["))]
    found: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in block.splitlines()[1:]:
        line = line.strip()
        if line.startswith("#"):
            current = found.setdefault(line.lstrip("# "), [])
        elif match := re.fullmatch(r'"(\w+)",', line):
            assert current is not None, f"{match[1]} is listed before any tier comment"
            current.append(match[1])
    return found


def test_top_level_all_is_grouped_by_tier_sorted_and_exact() -> None:
    grouped = tiers()
    assert tuple(grouped) == TIERS
    for tier, names in grouped.items():
        assert names == sorted(names, key=_sort_key), f"tier {tier!r} is not sorted"
    assert [name for names in grouped.values() for name in names] == zodworker.__all__
    public = {
        name
        for name, value in vars(zodworker).items()
        if not name.startswith("_") and not inspect.ismodule(value) and name != "annotations"
    }
    assert set(zodworker.__all__) == public


def test_the_errors_tier_holds_exactly_the_exception_classes() -> None:
    errors = {
        name
        for name in zodworker.__all__
        if inspect.isclass(getattr(zodworker, name))
        and issubclass(getattr(zodworker, name), BaseException)
    }
    assert errors == set(tiers()["errors"])


@pytest.mark.parametrize("name", zodworker.__all__)
def test_every_public_name_is_documented(name: str) -> None:
    obj = getattr(zodworker, name)
    if inspect.isclass(obj) or inspect.isfunction(obj):
        assert inspect.getdoc(obj), f"{name} has no docstring"


@pytest.mark.parametrize("module", MODULES)
def test_each_module_declares_what_it_exports(module: str) -> None:
    mod = importlib.import_module(module)
    assert mod.__doc__, f"{module} has no docstring"
    exported = mod.__all__
    if module != "zodworker":
        assert exported == sorted(exported, key=_sort_key), f"{module}.__all__ is not sorted"
    for name in exported:
        assert hasattr(mod, name), f"{module}.__all__ names missing {name}"


def test_errors_form_one_tree() -> None:
    for name in zodworker.__all__:
        obj = getattr(zodworker, name)
        if inspect.isclass(obj) and issubclass(obj, Exception):
            assert issubclass(obj, zodworker.ZodworkerError)


README = ROOT.parent / "README.md"


def _readme_section(title: str) -> str:
    text = README.read_text("utf-8")
    start = text.index(f"## {title}")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def test_the_readme_lists_every_public_name_under_its_tier() -> None:
    section = _readme_section("The public API in tiers")
    bullets = {
        tier: bullet.split("\n\n")[0]
        for bullet in section.split("\n- ")[1:]
        for tier in TIERS
        if bullet.lower().startswith(f"**{tier}**")
    }
    assert set(bullets) == set(TIERS)
    for tier, names in tiers().items():
        listed = set(re.findall(r"`(\w+)`", bullets[tier]))
        assert listed == set(names), (tier, sorted(listed ^ set(names)))


def test_the_modules_the_readme_names_exist() -> None:
    section = _readme_section("How it is built")
    paths = set(re.findall(r"`(zodworker/[\w/]+\.py)`", section))
    assert len(paths) > 10
    for path in paths:
        assert (ROOT.parent / path).is_file(), path
    tree = section[section.index("```") : section.index("```", section.index("```") + 3)]
    files = {path.name for path in ROOT.rglob("*.py")}
    for name in re.findall(r"\b(\w+\.py)\b", tree):
        assert name in files, name
