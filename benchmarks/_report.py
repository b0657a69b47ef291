"""``REPORT.md``: the table plus PNG bar charts (call latency, noisy-neighbour p99, CPU-bound
throughput, fault recovery, durable casts), written beside ``results.json``;
`durability_section` is the durability scenario's part of the table; `target_verdicts` reads
the targets' met/missed back from the Markdown. The charts need matplotlib (the optional extra
``beamish[bench]``); without it REPORT.md is the table and says so."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
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


def _fault_recovery(plt: Any, path: str, faults: dict[str, Any]) -> None:
    """Two panels over the fault kinds: *back in* (ms, beamish's median over its trials) and
    the acknowledged messages lost (totals); a threads fault that took its process down has
    no *back in* and is marked so."""
    b, t = faults["beamish"], faults.get("threads", {})
    kinds = list(b)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6), sharex=True,
                                      gridspec_kw={"height_ratios": [3, 2]})
    width = 0.4
    for i, (label, color, side) in enumerate((("beamish", BEAMISH, b),
                                              ("threads", THREADS, t))):
        xs = [k + (i - 0.5) * width for k in range(len(kinds))]
        back = [side.get(f, {}).get("recovery_ms") for f in kinds]
        lost = [side.get(f, {}).get("messages_lost") for f in kinds]
        bars = top.bar(xs, [v or 0 for v in back], width, label=label, color=color)
        for bar, f, v in zip(bars, kinds, back, strict=True):
            died = side.get(f, {}).get("process_died")
            text = "process\ndied" if died else ("never" if v is None else f"{v:.1f}")
            top.annotate(text, (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                         ha="center", va="bottom", fontsize=7)
        bars = bottom.bar(xs, [v or 0 for v in lost], width, label=label, color=color)
        for bar, v in zip(bars, lost, strict=True):
            bottom.annotate("—" if v is None else f"{v:,}",
                            (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                            ha="center", va="bottom", fontsize=7)
    target = faults.get("restart_target", {}).get("target_ms")
    if target:
        top.axhline(target, color=RAW, linestyle="--", linewidth=1,
                    label=f"target: {target:g} ms at p50")
    trials = faults.get("trials_per_fault", 1)
    top.set_title(f"Fault recovery: a faulty agent back in, messages lost "
                  f"(beamish: {trials} trial{'s' if trials > 1 else ''} per fault)")
    top.set_ylabel("back in, ms (median)")
    top.margins(y=0.25)
    top.legend(fontsize=8, loc="upper center", ncol=3)
    bottom.set_ylabel("acknowledged\nmessages lost")
    bottom.margins(y=0.3)
    bottom.set_xticks(range(len(kinds)))
    bottom.set_xticklabels([f.replace("_", " ") for f in kinds])
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
    faults = sc.get("faults")
    if _ok(faults) and faults.get("beamish"):
        _fault_recovery(plt, os.path.join(out_dir, "fault_recovery.png"), faults)
        made.append("fault_recovery.png")
    dur = sc.get("durability")
    if _ok(dur) and "cast" in dur:
        modes = ["memory", "process", "fsync"]
        _bars(plt, os.path.join(out_dir, "durability_cast.png"),
              "Cast throughput to one agent, by durability mode",
              "msgs/s until handled (higher is better)", modes,
              [("beamish", BEAMISH, [dur["cast"][m]["msgs_per_s"] for m in modes])])
        made.append("durability_cast.png")
    return made


def _verdict(met: bool | None) -> str:
    return {True: "**met**", False: "**missed**", None: "not measured"}[met]


def durability_section(d: Any) -> list[str]:
    """The durability scenario's Markdown: its targets (figure, bound, met/missed),
    then the figures per durability mode; nothing when the scenario did not run or failed."""
    if not _ok(d) or "targets" not in d:
        return []
    t, cast, call, kill = d["targets"], d["cast"], d["call"], d["kill"]
    raw50 = call["raw_zmq"]["p50_us"] if "raw_zmq" in call else None
    ct, lt, kt = t["cast_throughput"], t["call_p50"], t["kill_recovery"]
    kept = f"state kept {kill['state_kept_count']}/{kill['trials']}"
    call_fig = "—" if lt["figure"] is None else \
        f"{lt['figure']:.2f}× ({lt['process_p50_us']:,.0f} vs {raw50:,.0f} µs)"
    lines = ["", "## Durability targets: the cost of durable casts and calls, recovery "
             "from SIGKILL (this run)", "",
             "| target | figure | bound | result |", "| --- | --- | --- | --- |",
             f"| durable cast throughput, 1 agent: process ÷ memory | {ct['figure']:.2f}× "
             f"({ct['process_msgs_per_s']:,.0f} vs {ct['memory_msgs_per_s']:,.0f} msgs/s) | "
             f"≥ {ct['bound']:.2f}× | {_verdict(ct['met'])} |",
             f"| durable call p50 ÷ raw pyzmq round trip p50 | {call_fig} | ≤ {lt['bound']:g}× "
             f"| {_verdict(lt['met'])} |",
             f"| SIGKILLed agent: kill → its next call answered with its state | p50 "
             f"{kill['p50_ms']:.1f} ms (p99 {kill['p99_ms']:.1f}, max {kill['max_ms']:.1f}); "
             f"{kept} | p50 ≤ {kt['bound']:g} ms, state kept | {_verdict(kt['met'])} |",
             "", "| durability | cast msgs/s (until handled) | cast() p50 µs | call p50 µs | "
             "call p99 µs |", "| --- | ---: | ---: | ---: | ---: |"]
    for mode in ("memory", "process", "fsync"):
        c, k = cast[mode], call[mode]
        lines.append(f"| {mode} | {c['msgs_per_s']:,.0f} | {c['cast_call']['p50_us']:,.1f} | "
                     f"{k['p50_us']:,.1f} | {k['p99_us']:,.1f} |")
    if raw50 is not None:
        lines.append(f"| raw pyzmq DEALER↔ROUTER, 2 processes | — | — | {raw50:,.1f} | "
                     f"{call['raw_zmq']['p99_us']:,.1f} |")
    by_rep = ", ".join(f"{r:.2f}" for r in cast["process_over_memory_by_repeat"])
    fs = d.get("filesystem", {})
    lines += ["",
              f"Three nodes (one per mode) run side by side and the modes alternate in every "
              f"measurement. Casts: one sender thread, the Counter agent, from the first cast "
              f"until the agent answered a call with its count; median of "
              f"{cast['process']['repeats']} repeats of {cast['process']['messages_per_repeat']:,}"
              f" messages ({cast['fsync']['messages_per_repeat']:,} for fsync); process ÷ "
              f"memory by repeat: {by_rep}. Calls: an Echo agent, one caller thread, "
              f"{call['process']['n']:,} samples per mode ({call['fsync']['n']:,} for fsync) in "
              f"{call['blocks']} rotating blocks after a warm-up; the raw pyzmq figure is a "
              f"forked echo server in this run. Kill: {kill['trials']} trials on the process "
              f"node; each SIGKILLs the agent's process (pid from node.info) and at once calls "
              f"it with an increment, which waits in its durable mailbox; the time runs from "
              f"the kill to the reply, and the state is kept when the reply is the count "
              f"before the kill + 1. The agent runs under a supervisor whose intensity allows "
              f"the {kill['trials']} restarts in a row (the root's default, 3 in 5 s, would "
              f"mark it failed). Stores: process/fsync on {fs.get('process', '?')}, memory on "
              f"{fs.get('memory', '?')}. Memory mode runs the same LMDB commits on tmpfs "
              "(wiped when the node stops), so the cast ratio prices the disk, not the "
              "commit itself."]
    return lines


@dataclass(frozen=True, slots=True)
class Verdict:
    """One target of a report: what it asks (the row's first cell) and whether it was met."""

    target: str
    met: bool


_VERDICT_ROW = re.compile(r"^\| (?P<target>[^|]+?) \|.*\| \*\*(?P<verdict>met|missed)\*\* \|$",
                          re.M)


def target_verdicts(report: str) -> tuple[Verdict, ...]:
    """The targets of a report's targets tables (rows ending in **met** or **missed**), in
    the report's order; a target that was not measured has no verdict and is left out."""
    return tuple(Verdict(m["target"], m["verdict"] == "met")
                 for m in _VERDICT_ROW.finditer(report))


@dataclass(frozen=True, slots=True)
class Written:
    """What a benchmark run (or a re-render of its results) wrote, as absolute paths, with the
    report's Markdown and its targets' verdicts."""

    out_dir: str
    results: str
    report: str
    charts: tuple[str, ...]
    table: str
    targets: tuple[Verdict, ...]


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
