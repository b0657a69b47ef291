"""``REPORT.md``: the table plus PNG bar charts (call latency, noisy-neighbour p99, CPU-bound
throughput), written beside ``results.json``. The charts need matplotlib (the optional extra
``beamish[bench]``); without it REPORT.md is the table and says so."""

from __future__ import annotations

import os
from typing import Any

BEAMISH, THREADS, RAW = "#1f77b4", "#ff7f0e", "#7f7f7f"


def _ok(entry: Any) -> bool:
    return isinstance(entry, dict) and "error" not in entry


def _bars(plt: Any, path: str, title: str, ylabel: str, groups: list[str],
          series: list[tuple[str, str, list[float | None]]], log: bool = False) -> None:
    fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.8 / len(series)
    for i, (label, color, values) in enumerate(series):
        xs = [g + (i - (len(series) - 1) / 2) * width for g in range(len(groups))]
        vals = [v if v is not None else 0 for v in values]
        bars = ax.bar(xs, vals, width, label=label, color=color)
        for bar, v in zip(bars, values, strict=True):
            if v is not None:
                ax.annotate(f"{v:,.0f}" if v >= 10 else f"{v:.2f}",
                            (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                            ha="center", va="bottom", fontsize=8)
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(groups)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if log:
        ax.set_yscale("log")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def charts(results: dict[str, Any], out_dir: str) -> list[str]:
    """Write the PNG charts the results have data for; return their file names."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    sc = results["scenarios"]
    made: list[str] = []
    call = sc.get("call")
    if _ok(call) and "beamish" in call:
        series = [("beamish", BEAMISH, [call["beamish"]["p50_us"], call["beamish"]["p99_us"]]),
                  ("threads", THREADS, [call["threads"]["p50_us"], call["threads"]["p99_us"]])]
        if "raw_zmq" in call:
            series.append(("raw pyzmq", RAW, [call["raw_zmq"]["p50_us"],
                                              call["raw_zmq"]["p99_us"]]))
        _bars(plt, os.path.join(out_dir, "call_latency.png"), "Call round trip, one idle agent",
              "µs (lower is better)", ["p50", "p99"], series)
        made.append("call_latency.png")
    noisy = sc.get("noisy")
    if _ok(noisy):
        b, t = noisy["beamish"], noisy["threads"]
        _bars(plt, os.path.join(out_dir, "noisy_p99.png"),
              "Echo call p99, idle and with a neighbour spinning the CPU",
              "p99 µs (log scale, lower is better)", ["idle", "neighbour spinning"],
              [("beamish", BEAMISH, [b["idle"]["p99_us"], b["noisy"]["p99_us"]]),
               ("threads", THREADS, [t["idle"]["p99_us"], t["noisy"]["p99_us"]])], log=True)
        made.append("noisy_p99.png")
    cpu = sc.get("cpu")
    if _ok(cpu):
        _bars(plt, os.path.join(out_dir, "cpu_throughput.png"),
              f"Pure-Python work, {cpu['agents']} agents",
              "work units/s (higher is better)", [f"{cpu['agents']} agents"],
              [("beamish", BEAMISH, [cpu["beamish"]["units_per_s"]]),
               ("threads", THREADS, [cpu["threads"]["units_per_s"]]),
               ("one core, no runtime", RAW, [cpu["one_core_units_per_s"]])])
        made.append("cpu_throughput.png")
    return made


def write_report(results: dict[str, Any], table: str, out_dir: str) -> list[str]:
    """Write ``REPORT.md`` (the table, then the charts) in ``out_dir``; return the charts."""
    made = charts(results, out_dir)
    parts = [table]
    if made:
        parts.append("## Charts\n")
        parts.extend(f"![{name[:-4].replace('_', ' ')}]({name})\n" for name in made)
    else:
        parts.append("(No charts: matplotlib is not importable; install `beamish[bench]`.)\n")
    with open(os.path.join(out_dir, "REPORT.md"), "w") as fh:
        fh.write("\n".join(parts))
    return made
