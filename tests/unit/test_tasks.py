"""Finding and loading task handlers: task lists, task directories, and the watcher."""

from __future__ import annotations

import logging
import os
import sys
import textwrap
from pathlib import Path
from typing import Any

import anyio
import pytest

from zodworker.errors import TaskLoadError, ZodworkerError
from zodworker.worker.tasks import Handler, load_task_directory, validate_task_list
from zodworker.worker.watch import TaskDirectoryWatcher

DEADLINE = 10  # seconds; generous, only hit when something is broken


def write(path: Path, source: str, *, bump: bool = True) -> Path:
    """Write ``source`` to ``path`` atomically; with ``bump``, set its mtime clearly later.

    Writing a hidden temporary file and renaming it means a poll never sees a half-written
    module; the explicit mtime defeats coarse filesystem timestamps.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(textwrap.dedent(source))
    if bump:
        later = (path.stat().st_mtime_ns if path.exists() else tmp.stat().st_mtime_ns) + 2 * 10**9
        os.utime(tmp, ns=(later, later))
    os.replace(tmp, path)
    return path


def returning(value: object) -> str:
    return f"def task(payload, helpers):\n    return {value!r}\n"


def task_modules() -> set[str]:
    return {name for name in sys.modules if name.startswith("zodworker_tasks.")}


# -- load_task_directory ----------------------------------------------------------------------


def test_flat_and_nested_identifiers(tmp_path: Path) -> None:
    write(tmp_path / "send_email.py", returning("email"))
    write(tmp_path / "billing" / "charge.py", returning("charge"))
    write(tmp_path / "a" / "b" / "c.py", returning("c"))

    tasks = load_task_directory(tmp_path)

    assert set(tasks) == {"send_email", "billing/charge", "a/b/c"}
    assert tasks["a/b/c"](None, None) == "c"
    assert tasks["billing/charge"](None, None) == "charge"


def test_accepts_str_paths(tmp_path: Path) -> None:
    write(tmp_path / "one.py", returning(1))
    assert set(load_task_directory(str(tmp_path))) == {"one"}


def test_skips_private_hidden_and_non_python_entries(tmp_path: Path) -> None:
    broken = "this is not python\n"
    write(tmp_path / "real.py", returning("real"))
    write(tmp_path / "__init__.py", broken)
    write(tmp_path / "_private.py", broken)
    write(tmp_path / ".hidden.py", broken)
    write(tmp_path / "_lib" / "helper.py", broken)
    write(tmp_path / ".git" / "hook.py", broken)
    write(tmp_path / "__pycache__" / "real.py", broken)
    write(tmp_path / "nested" / "_skip.py", broken)
    write(tmp_path / "nested" / "kept.py", returning("kept"))
    (tmp_path / "README.md").write_text("# tasks\n")
    (tmp_path / "notes.txt").write_text("def task(): pass\n")
    (tmp_path / "data.pyc").write_bytes(b"\x00\x01")

    assert set(load_task_directory(tmp_path)) == {"real", "nested/kept"}


def test_empty_directory_gives_no_tasks(tmp_path: Path) -> None:
    assert load_task_directory(tmp_path) == {}


@pytest.mark.anyio
async def test_finds_sync_and_async_tasks(tmp_path: Path) -> None:
    write(tmp_path / "sync_task.py", "def task(payload, helpers):\n    return ('sync', payload)\n")
    write(
        tmp_path / "async_task.py",
        "async def task(payload, helpers):\n    return ('async', payload)\n",
    )
    write(
        tmp_path / "instance.py",
        """\
        class _Handler:
            def __call__(self, payload, helpers):
                return ("instance", payload)

        task = _Handler()
        """,
    )

    tasks = load_task_directory(tmp_path)

    assert tasks["sync_task"]({"x": 1}, None) == ("sync", {"x": 1})
    assert await tasks["async_task"]({"x": 2}, None) == ("async", {"x": 2})
    assert tasks["instance"](3, None) == ("instance", 3)


def test_module_without_task_names_the_file(tmp_path: Path) -> None:
    write(tmp_path / "ok.py", returning("ok"))
    bad = write(tmp_path / "billing" / "refund.py", "def handler(payload, helpers):\n    pass\n")

    with pytest.raises(TaskLoadError) as caught:
        load_task_directory(tmp_path)

    error = caught.value
    assert isinstance(error, ZodworkerError)
    assert error.path == bad
    assert error.identifier == "billing/refund"
    assert str(bad) in str(error) and "`task`" in str(error)


def test_non_callable_task_is_rejected(tmp_path: Path) -> None:
    bad = write(tmp_path / "odd.py", "task = 42\n")
    with pytest.raises(TaskLoadError, match="not a callable") as caught:
        load_task_directory(tmp_path)
    assert caught.value.path == bad and str(bad) in str(caught.value)


def test_syntax_error_chains_the_original(tmp_path: Path) -> None:
    bad = write(tmp_path / "broken.py", "def task(payload, helpers)\n    return 1\n")

    with pytest.raises(TaskLoadError) as caught:
        load_task_directory(tmp_path)

    assert isinstance(caught.value.__cause__, SyntaxError)
    assert caught.value.path == bad
    assert str(bad) in str(caught.value) and "SyntaxError" in str(caught.value)


def test_import_time_exception_chains_the_original(tmp_path: Path) -> None:
    write(tmp_path / "boom.py", "raise RuntimeError('no config')\ndef task(p, h): pass\n")
    with pytest.raises(TaskLoadError, match="no config") as caught:
        load_task_directory(tmp_path)
    assert isinstance(caught.value.__cause__, RuntimeError)


def test_failed_load_leaves_sys_modules_untouched(tmp_path: Path) -> None:
    write(tmp_path / "a.py", returning("first"))
    first = load_task_directory(tmp_path)
    loaded = task_modules()
    module = sys.modules[first["a"].__module__]

    write(tmp_path / "a.py", returning("second"))  # loads fine, then ...
    write(tmp_path / "b.py", returning("b"))
    write(tmp_path / "c.py", "def task(:\n")  # ... this one fails

    with pytest.raises(TaskLoadError):
        load_task_directory(tmp_path)

    assert task_modules() == loaded
    assert sys.modules[first["a"].__module__] is module


def test_missing_directory(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(TaskLoadError, match="does not exist") as caught:
        load_task_directory(missing)
    assert caught.value.path == missing


def test_a_file_is_not_a_directory(tmp_path: Path) -> None:
    file = write(tmp_path / "a.py", returning(1))
    with pytest.raises(TaskLoadError, match="not a directory"):
        load_task_directory(file)


def test_reload_gives_fresh_modules_under_stable_names(tmp_path: Path) -> None:
    write(
        tmp_path / "counter.py",
        """\
        calls = []

        def task(payload, helpers):
            calls.append(payload)
            return len(calls)
        """,
    )
    first = load_task_directory(tmp_path)
    assert first["counter"](1, None) == 1
    assert first["counter"](2, None) == 2

    second = load_task_directory(tmp_path)

    assert second["counter"] is not first["counter"]
    assert second["counter"].__module__ == first["counter"].__module__
    assert second["counter"].__module__.startswith("zodworker_tasks.")
    assert sys.modules[second["counter"].__module__].__dict__["task"] is second["counter"]
    assert second["counter"](3, None) == 1  # module state is not shared between loads
    assert first["counter"](4, None) == 3  # the old handler keeps its own module


def test_same_size_edit_with_unchanged_mtime_takes_effect(tmp_path: Path) -> None:
    # A bytecode cache keyed on (mtime in seconds, size) would serve the old code here.
    path = write(tmp_path / "a.py", returning(1))
    stamp = path.stat().st_mtime_ns
    assert load_task_directory(tmp_path)["a"](None, None) == 1

    write(path, returning(2), bump=False)
    os.utime(path, ns=(stamp, stamp))

    assert load_task_directory(tmp_path)["a"](None, None) == 2
    assert not (tmp_path / "__pycache__").exists()


def test_removed_files_leave_sys_modules(tmp_path: Path) -> None:
    write(tmp_path / "a.py", returning("a"))
    gone = write(tmp_path / "b.py", returning("b"))
    name = load_task_directory(tmp_path)["b"].__module__
    assert name in sys.modules

    gone.unlink()
    assert set(load_task_directory(tmp_path)) == {"a"}
    assert name not in sys.modules


def test_unusual_file_names_get_distinct_modules(tmp_path: Path) -> None:
    write(tmp_path / "send-email.py", returning("dash"))
    write(tmp_path / "a.b.py", returning("dotted"))
    write(tmp_path / "a" / "b.py", returning("nested"))
    write(tmp_path / "2fa.py", returning("digit"))

    tasks = load_task_directory(tmp_path)

    assert {key: fn(None, None) for key, fn in tasks.items()} == {
        "send-email": "dash",
        "a.b": "dotted",
        "a/b": "nested",
        "2fa": "digit",
    }
    assert len({fn.__module__ for fn in tasks.values()}) == 4


# -- validate_task_list -----------------------------------------------------------------------


def _handler(payload: Any, helpers: Any) -> None:
    return None


def test_validate_task_list_returns_a_copy() -> None:
    given: dict[str, Handler] = {"a": _handler, "x" * 128: _handler, "a/b": print}
    checked = validate_task_list(given)
    assert checked == given and checked is not given


@pytest.mark.parametrize(
    ("tasks", "expected"),
    [
        ({"": _handler}, "empty"),
        ({"x" * 129: _handler}, "129 characters"),
        ({"a\x00b": _handler}, "NUL"),
        ({"send_email": "not a function"}, "'send_email'.*not a callable"),
        ({"fine": _handler, "broken": None}, "'broken'"),
        ({3: _handler}, "must be strings"),
    ],
)
def test_validate_task_list_rejects(tasks: dict[Any, Any], expected: str) -> None:
    with pytest.raises(TaskLoadError, match=expected) as caught:
        validate_task_list(tasks)
    assert caught.value.path is None


# -- TaskDirectoryWatcher ---------------------------------------------------------------------


class Changes:
    """Records ``on_change`` calls; :meth:`next` waits for the next one, with a deadline."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Handler]] = []
        self._event = anyio.Event()

    def __call__(self, tasks: dict[str, Handler]) -> None:
        self.calls.append(tasks)
        self._event.set()

    async def next(self) -> dict[str, Handler]:
        with anyio.fail_after(DEADLINE):
            await self._event.wait()
        self._event = anyio.Event()
        return self.calls[-1]


class ErrorSignal(logging.Handler):
    """Sets an event whenever an ERROR record is logged (the watcher logs on the loop)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.event = anyio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.event.set()

    async def next(self) -> None:
        with anyio.fail_after(DEADLINE):
            await self.event.wait()
        self.event = anyio.Event()


def results(tasks: dict[str, Handler]) -> dict[str, Any]:
    return {key: fn(None, None) for key, fn in tasks.items()}


@pytest.mark.anyio
async def test_watcher_reloads_on_edit_add_delete_and_survives_errors(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write(tmp_path / "greet.py", returning("hello"))
    write(tmp_path / "billing" / "charge.py", returning("charged"))
    logger = logging.getLogger("tests.unit.test_tasks.watcher")
    errors = ErrorSignal()
    logger.addHandler(errors)
    caplog.set_level(logging.INFO, logger=logger.name)
    changes = Changes()
    watcher = TaskDirectoryWatcher(tmp_path, changes, interval=0.05, logger=logger)
    assert results(watcher.snapshot()) == {"greet": "hello", "billing/charge": "charged"}

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(watcher.run)

            # An edit: the new code runs.
            write(tmp_path / "greet.py", returning("bonjour"))
            tasks = await changes.next()
            assert results(tasks) == {"greet": "bonjour", "billing/charge": "charged"}
            assert results(watcher.snapshot()) == results(tasks)

            # A new file, nested: it appears.
            write(tmp_path / "billing" / "refund.py", returning("refunded"))
            tasks = await changes.next()
            assert results(tasks) == {
                "greet": "bonjour",
                "billing/charge": "charged",
                "billing/refund": "refunded",
            }

            # A deleted file: it disappears.
            (tmp_path / "billing" / "charge.py").unlink()
            tasks = await changes.next()
            assert set(tasks) == {"greet", "billing/refund"}

            # A syntax error: logged with the file name, previous tasks kept, no callback.
            before = len(changes.calls)
            broken = write(tmp_path / "greet.py", "def task(payload, helpers)\n    return 1\n")
            await errors.next()
            assert len(changes.calls) == before
            assert results(watcher.snapshot()) == {
                "greet": "bonjour",
                "billing/refund": "refunded",
            }
            failures = [r for r in caplog.records if r.levelno >= logging.ERROR]
            assert len(failures) == 1
            assert str(broken) in failures[0].getMessage()
            assert failures[0].exc_info is not None
            assert isinstance(failures[0].exc_info[1], TaskLoadError)

            # Fixing it: the change is picked up.
            write(tmp_path / "greet.py", returning("hola"))
            tasks = await changes.next()
            assert results(tasks) == {"greet": "hola", "billing/refund": "refunded"}
            assert len(changes.calls) == before + 1

            tg.cancel_scope.cancel()
    finally:
        logger.removeHandler(errors)


@pytest.mark.anyio
async def test_watcher_keeps_going_when_the_callback_fails(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write(tmp_path / "a.py", returning(1))
    logger = logging.getLogger("tests.unit.test_tasks.callback")
    errors = ErrorSignal()
    logger.addHandler(errors)
    changes = Changes()
    failed = False

    def on_change(tasks: dict[str, Handler]) -> None:
        nonlocal failed
        if not failed:
            failed = True
            raise RuntimeError("callback bug")
        changes(tasks)

    watcher = TaskDirectoryWatcher(tmp_path, on_change, interval=0.05, logger=logger)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(watcher.run)
            write(tmp_path / "a.py", returning(2))
            await errors.next()
            assert "callback bug" in caplog.text
            assert results(watcher.snapshot()) == {"a": 2}

            write(tmp_path / "a.py", returning(3))
            assert results(await changes.next()) == {"a": 3}
            tg.cancel_scope.cancel()
    finally:
        logger.removeHandler(errors)


def test_watcher_fails_fast_on_a_broken_directory(tmp_path: Path) -> None:
    write(tmp_path / "a.py", "nothing here = \n")

    def on_change(tasks: dict[str, Handler]) -> None:
        pass

    with pytest.raises(TaskLoadError):
        TaskDirectoryWatcher(tmp_path, on_change)
    with pytest.raises(TaskLoadError):
        TaskDirectoryWatcher(tmp_path / "missing", on_change)


def test_watcher_rejects_a_non_positive_interval(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="interval"):
        TaskDirectoryWatcher(tmp_path, lambda tasks: None, interval=0)


def test_snapshot_is_a_copy(tmp_path: Path) -> None:
    write(tmp_path / "a.py", returning(1))
    watcher = TaskDirectoryWatcher(tmp_path, lambda tasks: None)
    snapshot = watcher.snapshot()
    snapshot.clear()
    assert set(watcher.snapshot()) == {"a"}
