"""A non-editable install into a fresh virtualenv, outside the checkout, works: the SQL
files and the dashboard's templates and static files ship inside the wheel, and so does
``py.typed``, so mypy checks a user's enqueue."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_pip_install_then_migrate_from_outside_the_checkout(
    tmp_path: Path, empty_db_url: str
) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", str(ROOT)],
        check=True,
        timeout=600,
        cwd=tmp_path,
    )
    script = textwrap.dedent(
        """
        import asyncio, sys, psycopg, zodworker
        from zodworker.db import sqlfiles
        assert "site-packages" in zodworker.__file__, zodworker.__file__
        assert "site-packages" in str(sqlfiles._sql_root()), sqlfiles._sql_root()
        from importlib import resources
        web = resources.files("zodworker") / "web"  # the dashboard's files ship too
        for name in ("templates/overview.html", "static/htmx.min.js", "static/style.css"):
            assert (web / name).is_file(), name
        async def main():
            async with await psycopg.AsyncConnection.connect(sys.argv[1], autocommit=True) as c:
                result = await zodworker.migrate(c)
                job = await zodworker.Store().add_job(c, "installed", {"ok": True})
                print(result.after, job.task_identifier)
        asyncio.run(main())
        """
    )
    out = subprocess.run(
        [str(python), "-c", script, empty_db_url],
        check=True,
        timeout=120,
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert out.stdout.split() == ["20", "installed"]
    cli = subprocess.run(
        [str(venv / "bin" / "zodworker"), "-c", empty_db_url, "status"],
        check=True,
        timeout=120,
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert cli.stdout.split()[-5:] == ["installed", "1", "0", "0", "0"]

    # py.typed ships: mypy, run on the user's code against the installed package, names the
    # model a task expects when the payload does not fit
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "mypy"], check=True, timeout=600, cwd=tmp_path
    )
    samples = ROOT / "tests" / "typing"
    for name in ("sample_ok.py", "sample_wrong_payload.py"):
        (tmp_path / name).write_text((samples / name).read_text())

    def mypy(sample: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(python), "-m", "mypy", "--strict", "--no-incremental", sample],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    ok = mypy("sample_ok.py")
    assert ok.returncode == 0, ok.stdout
    wrong = mypy("sample_wrong_payload.py")
    assert wrong.returncode == 1, wrong.stdout
    assert "sample_wrong_payload.py:23: error" in wrong.stdout and "StartRun" in wrong.stdout
