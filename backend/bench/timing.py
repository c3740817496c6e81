"""Side-by-side timing: the two sides of every ratio run interleaved in one process, and medians are taken,
so drift on a shared machine (other processes, frequency changes) hits both sides alike."""

from __future__ import annotations

import datetime as dt
import os
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any


def interleaved(sides: dict[str, Callable[[], Any]], repeats: int, warmup: int = 1) -> dict[str, list[float]]:
    """Seconds per call of each side, `repeats` times, alternating the order every round (ABBA...)."""
    for _ in range(warmup):
        for fn in sides.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in sides}
    items = list(sides.items())
    for i in range(repeats):
        for key, fn in items if i % 2 == 0 else items[::-1]:
            start = time.perf_counter()
            fn()
            times[key].append(time.perf_counter() - start)
    return times


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100): with few samples p99 is the maximum, never extrapolated."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 100))))
    return float(ordered[rank - 1])


def ratio(times: dict[str, list[float]], num: str, den: str) -> float:
    return median(times[num]) / median(times[den])


def machine_info() -> dict[str, Any]:
    import torch

    load1, load5, load15 = os.getloadavg()
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": "cpu",
        "platform": platform.platform(),
        "loadavg_start": [round(load1, 2), round(load5, 2), round(load15, 2)],
    }
