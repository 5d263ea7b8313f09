"""The documentation site: it builds with no warnings (a broken link or reference fails),
and every Python sample marked ``<!-- runnable -->`` runs as written against a database."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
RUNNABLE = re.compile(r"<!-- runnable -->\n```python\n(.*?)\n```", re.DOTALL)


def samples() -> list[tuple[str, str]]:
    found = []
    for page in sorted(DOCS.rglob("*.md")):
        for n, code in enumerate(RUNNABLE.findall(page.read_text("utf-8")), 1):
            found.append((f"{page.relative_to(DOCS)}#{n}", code))
    return found


def test_the_docs_build_with_no_warnings(tmp_path: Path) -> None:
    pytest.importorskip("mkdocs", reason="mkdocs is part of the dev extra")
    build = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        check=False,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    assert "WARNING" not in build.stderr, build.stderr
    assert (tmp_path / "site" / "reference" / "api" / "index.html").exists()


def test_there_are_runnable_samples() -> None:
    assert len(samples()) >= 2, "the docs lost their runnable samples"


@pytest.mark.parametrize(("where", "code"), samples(), ids=[w for w, _ in samples()])
def test_a_runnable_sample_runs(where: str, code: str, db_url: str, tmp_path: Path) -> None:
    script = tmp_path / "sample.py"
    script.write_text(code)
    run = subprocess.run(
        [sys.executable, str(script)],
        env={**os.environ, "DATABASE_URL": db_url},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, f"{where}:\n{run.stdout}{run.stderr}"
