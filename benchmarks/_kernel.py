"""CPU used by kernel threads that compete with the agents for the cores.

On some VMs the kernel's DAMON thread (kdamond) works per page of memory in use: with
1,000 agent processes alive on the 2-core development machine it took ~24% of one core.
The benchmarks measure and report it next to the figures it disturbs.
"""

from __future__ import annotations

import time

import psutil


def kernel_threads_snapshot() -> tuple[float, dict[int, tuple[str, float]]]:
    """CPU times of kernel threads that work per process or per page (DAMON's kdamond,
    kswapd, khugepaged), for `kernel_threads_cpu`."""
    snap: dict[int, tuple[str, float]] = {}
    for p in psutil.process_iter(["name"]):
        name = p.info["name"] or ""
        if name.startswith(("kdamond", "kswapd", "khugepaged")):
            try:
                snap[p.pid] = (name, sum(p.cpu_times()[:2]))
            except psutil.Error:
                pass
    return time.perf_counter(), snap


def kernel_threads_cpu(since: tuple[float, dict[int, tuple[str, float]]]) -> dict[str, float]:
    """Each such kernel thread's CPU share (of one core) since the snapshot ``since``, when
    above 0.5%."""
    t0, snap = since
    seconds = max(1e-6, time.perf_counter() - t0)
    out: dict[str, float] = {}
    for pid, (name, before) in snap.items():
        try:
            share = (sum(psutil.Process(pid).cpu_times()[:2]) - before) / seconds
        except psutil.Error:
            continue
        if share > 0.005:
            out[name] = round(share, 3)
    return out


def describe(shares: dict[str, float]) -> str:
    """``"kdamond.0 24%, kswapd0 3%"``: each kernel thread's share of one core."""
    return ", ".join(f"{name} {share * 100:.0f}%" for name, share in shares.items())
