"""zodworker run --watch: editing a task module changes what the running worker does."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from tests.support.procs import Procs

TASK = """
def task(payload, helpers):
    print("{word} " + str(payload["n"]), flush=True)
"""


def write_task(path: Path, word: str, mtime_bump: int) -> None:
    tmp = path.with_name(".tmp-" + path.name)
    tmp.write_text(TASK.format(word=word))
    stat = path.stat() if path.exists() else None
    if stat is not None:  # make the change visible even within the filesystem's mtime tick
        os.utime(tmp, ns=(stat.st_atime_ns, stat.st_mtime_ns + mtime_bump * 1_000_000_000))
    tmp.replace(path)


def test_edited_task_takes_effect_without_a_restart(
    db_url: str, tmp_path: Path, procs: Procs
) -> None:
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    write_task(tasks / "say.py", "before", 0)
    worker = procs.zodworker("-c", db_url, "run", "--watch", "--poll-interval", "100")
    worker.wait_for("running tasks say")

    added = procs.zodworker("-c", db_url, "add-job", "say", '{"n": 1}')
    assert added.wait_exit(60) == 0, added.output()
    worker.wait_for("before 1")

    mark = worker.mark()
    write_task(tasks / "say.py", "after", 5)
    write_task(tasks / "shout.py", "SHOUT", 0)  # a new task appears too
    worker.wait_for("reloaded 2 tasks", after=mark)
    for name, n in [("say", 2), ("shout", 3)]:
        again = procs.zodworker("-c", db_url, "add-job", name, f'{{"n": {n}}}')
        assert again.wait_exit(60) == 0, again.output()
    worker.wait_for("after 2", after=mark)
    worker.wait_for("SHOUT 3", after=mark)
    assert "before 2" not in worker.output()

    worker.send(signal.SIGTERM)
    assert worker.wait_exit(60) == 0, worker.output()
