"""How the benchmarks tell a difference from noise: interleaved pairs and their ratios.

On a small shared machine one run of a system can be 20-30% off the next. Each measure is
therefore taken in *pairs*: both systems back to back, the one going first alternating from
pair to pair, and the figure reported is the **median of the per-pair ratios** with its
spread (interquartile range and range). A ratio whose IQR straddles 1.0 is not a result.
The 1-minute load average is recorded before every pair: a pair taken while something else
loaded the machine shows up there.
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

__all__ = ["DEFAULT_PAIRS", "Spread", "load_average", "order", "spread"]

DEFAULT_PAIRS = 6

T = TypeVar("T")


@dataclass(frozen=True)
class Spread:
    """Median, quartiles and range of a set of values (per-pair ratios, mostly)."""

    n: int
    median: float
    q1: float
    q3: float
    low: float
    high: float

    def ratio(self) -> str:
        """``1.23x (IQR 1.10-1.31, range 0.98-1.40, 6 pairs)``."""
        return (
            f"{self.median:.2f}x (IQR {self.q1:.2f}-{self.q3:.2f}, "
            f"range {self.low:.2f}-{self.high:.2f}, {self.n} pairs)"
        )

    def value(self, unit: str = "", digits: int = 2) -> str:
        """``4.21 ms (IQR 4.0-4.5)`` for plain values."""
        f = f".{digits}f"
        return f"{self.median:{f}}{unit} (IQR {self.q1:{f}}-{self.q3:{f}})"


def spread(values: Sequence[float]) -> Spread:
    """The :class:`Spread` of ``values`` (at least one)."""
    ordered = sorted(values)
    if len(ordered) == 1:
        only = ordered[0]
        return Spread(1, only, only, only, only, only)
    q1, _, q3 = statistics.quantiles(ordered, n=4, method="inclusive")
    return Spread(len(ordered), statistics.median(ordered), q1, q3, ordered[0], ordered[-1])


def order(systems: Sequence[T], pair_index: int) -> list[T]:
    """The systems in the order they run in pair ``pair_index``: who goes first alternates
    (for more than two, the list rotates)."""
    if not systems:
        return []
    shift = pair_index % len(systems)
    return list(systems[shift:]) + list(systems[:shift])


def load_average() -> float:
    """The 1-minute load average (0.0 where the platform has none)."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return 0.0
