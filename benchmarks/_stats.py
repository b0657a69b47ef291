"""Small measurement helpers: percentiles, a latency summary, machine facts."""

from __future__ import annotations

import datetime
import math
import os
import platform
import statistics
import sys
from collections.abc import Sequence
from typing import Any


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) of already sorted values, linearly interpolated
    between closest ranks (numpy's default method)."""
    if not sorted_values:
        return math.nan
    pos = (len(sorted_values) - 1) * q / 100.0
    low = math.floor(pos)
    high = min(low + 1, len(sorted_values) - 1)
    frac = pos - low
    return sorted_values[low] * (1.0 - frac) + sorted_values[high] * frac


def latency_summary(ns: Sequence[int]) -> dict[str, Any]:
    """p50/p90/p99/p99.9/max/mean of latencies given in nanoseconds, in microseconds."""
    values = sorted(x / 1000.0 for x in ns)
    return {
        "n": len(values),
        "p50_us": percentile(values, 50),
        "p90_us": percentile(values, 90),
        "p99_us": percentile(values, 99),
        "p999_us": percentile(values, 99.9),
        "max_us": values[-1] if values else math.nan,
        "mean_us": statistics.fmean(values) if values else math.nan,
    }


def median(values: Sequence[float]) -> float:
    """The median, NaN for no values."""
    return statistics.median(values) if values else math.nan


def machine_info() -> dict[str, Any]:
    """What the figures depend on: cores, Python, libraries, load, date."""
    import psutil
    import zmq
    info: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
        else None,
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "pyzmq": zmq.__version__,
        "libzmq": zmq.zmq_version(),
        "psutil": psutil.__version__,
        "memory_total_bytes": psutil.virtual_memory().total,
    }
    try:
        info["loadavg_at_start"] = list(os.getloadavg())
    except OSError:
        pass
    try:
        import lmdb
        info["lmdb"] = lmdb.__version__
    except ImportError:
        pass
    return info
