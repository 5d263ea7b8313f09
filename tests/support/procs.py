"""Worker processes for tests: start them, read their output, signal them, clean them up.

Each :class:`Proc` has a thread draining its combined stdout/stderr into memory, so a chatty
process can never block on a full pipe, and a test can wait for a line (with a deadline)
at any time. :class:`Procs` remembers what a test started and kills whatever is still
running at the end (each process by its own id, nothing else).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

__all__ = ["Proc", "Procs", "poll_until"]


class Proc:
    """One child process with its output collected line by line."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        full_env = {**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"}
        full_env.pop("DATABASE_URL", None)
        self.argv = list(argv)
        self.popen = subprocess.Popen(
            self.argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            env=full_env,
            cwd=cwd,
        )
        self._lines: list[str] = []
        self._eof = False
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._pump, daemon=True)
        self._reader.start()

    def _pump(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            with self._cond:
                self._lines.append(line)
                self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    def alive(self) -> bool:
        return self.popen.poll() is None

    def output(self) -> str:
        with self._cond:
            return "".join(self._lines)

    def mark(self) -> int:
        """The number of lines read so far (to wait only for later lines)."""
        with self._cond:
            return len(self._lines)

    def wait_for(self, needle: str, within: float = 60.0, *, after: int = 0) -> str:
        """Return the first line from index ``after`` on containing ``needle``; fail at the
        deadline or when the process closes its output without printing it."""
        deadline = time.monotonic() + within
        with self._cond:
            index = after
            while True:
                while index < len(self._lines):
                    if needle in self._lines[index]:
                        return self._lines[index]
                    index += 1
                remaining = deadline - time.monotonic()
                if self._eof or remaining <= 0:
                    break
                self._cond.wait(min(remaining, 0.5))
        state = "exited" if self._eof else f"still running after {within}s"
        raise AssertionError(
            f"{needle!r} not seen ({' '.join(self.argv[-6:])}: {state}); output:\n" + self.output()
        )

    def send(self, sig: signal.Signals) -> None:
        self.popen.send_signal(sig)

    def wait_exit(self, within: float) -> int:
        """Wait for the process to exit (fail at the deadline); return its exit code."""
        try:
            code = self.popen.wait(timeout=within)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"process {self.pid} still running {within}s later; output:\n{self.output()}"
            ) from None
        self._reader.join(timeout=5)
        return code

    def kill(self) -> None:
        """SIGKILL this process (if still running) and reap it."""
        if self.popen.poll() is None:
            self.popen.kill()
        self.popen.wait(timeout=30)
        self._reader.join(timeout=5)


class Procs:
    """The processes a test started; :meth:`close` kills the ones still running."""

    def __init__(self, cwd: Path | None = None) -> None:
        self.cwd = cwd
        self.started: list[Proc] = []

    def python(self, *args: str, env: dict[str, str] | None = None) -> Proc:
        """``python ARGS...`` in :attr:`cwd`."""
        proc = Proc([sys.executable, *args], cwd=self.cwd, env=env)
        self.started.append(proc)
        return proc

    def zodworker(self, *args: str, env: dict[str, str] | None = None) -> Proc:
        """``python -m zodworker ARGS...`` in :attr:`cwd` (DATABASE_URL removed)."""
        return self.python("-m", "zodworker", *args, env=env)

    def close(self) -> None:
        for proc in self.started:
            proc.kill()


def poll_until(probe: Callable[[], T], *, within: float, what: str, interval: float = 0.05) -> T:
    """Call ``probe`` until it returns something truthy and return that; fail at the
    deadline with ``what`` in the message."""
    deadline = time.monotonic() + within
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what} (last: {value!r})")
        time.sleep(interval)
