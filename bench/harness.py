"""Time our code and the baseline a user would pick instead, in the same run, as a ratio."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Comparison:
    """Medians of repeated runs of ours and a baseline over the same work."""

    benchmark: str
    work: str
    ours: str
    baseline: str
    ours_seconds: float
    baseline_seconds: float
    repeats: int

    @property
    def speedup(self) -> float:
        """How many times faster ours is (>1 means ours wins)."""
        return self.baseline_seconds / self.ours_seconds

    def row(self) -> str:
        return (f"| {self.benchmark} | {self.work} | {self.ours} | {self.ours_seconds:.3f} s | "
                f"{self.baseline} | {self.baseline_seconds:.3f} s | {self.speedup:.2f}x |")


def median_seconds(fn: Callable[[], object], repeats: int,
                   setup: Callable[[], object] | None = None) -> float:
    """Median wall time of ``fn`` over ``repeats`` runs; ``setup`` runs untimed before each."""
    times = []
    for _ in range(repeats):
        if setup is not None:
            setup()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def compare(benchmark: str, work: str, ours: tuple[str, Callable[[], object]],
            baseline: tuple[str, Callable[[], object]], repeats: int = 3,
            setup: Callable[[], object] | None = None) -> Comparison:
    """Alternate ours and the baseline so machine noise hits both alike."""
    ours_t, base_t = [], []
    for _ in range(repeats):
        ours_t.append(median_seconds(ours[1], 1, setup))
        base_t.append(median_seconds(baseline[1], 1, setup))
    return Comparison(benchmark, work, ours[0], baseline[0], statistics.median(ours_t),
                      statistics.median(base_t), repeats)


def machine() -> str:
    return (f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, "
            f"Python {platform.python_version()}")


TABLE_HEADER = ("| benchmark | work | ours | time | baseline | time | speed-up |\n"
                "|---|---|---|---:|---|---:|---:|")
