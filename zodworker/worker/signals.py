"""Signals: the first SIGINT/SIGTERM shuts down gracefully, the second forcefully."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable

__all__ = ["handle_signals"]

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def handle_signals(
    shutdown: Callable[..., None], stopping: Callable[[], bool], logger: logging.Logger
) -> Callable[[], None]:
    """Install SIGINT/SIGTERM handlers on the running loop that call
    ``shutdown(forceful=stopping())``; return a function that removes them."""
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        forceful = stopping()
        logger.warning(
            "%s received: %s shutdown",
            signal.Signals(signum).name,
            "forceful" if forceful else "graceful (send again to force)",
        )
        shutdown(forceful=forceful)

    for sig in _SIGNALS:
        loop.add_signal_handler(sig, on_signal, sig)

    def remove() -> None:
        for sig in _SIGNALS:
            loop.remove_signal_handler(sig)

    return remove
