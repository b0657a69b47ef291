"""``python -m benchmarks [--quick] [--peers] [--out DIR] [--scenarios call,cast,spawn]``.

Runs the scenarios of `._scenarios` on beamish and on the plain-threads runtime side by
side, in one run, prints progress lines on stderr and a Markdown table on stdout, and
writes ``results.json`` (every figure, plus the machine) and ``REPORT.md`` (the table and
PNG charts, when matplotlib is importable) to ``--out`` (default
``benchmarks/results/<YYYYmmdd-HHMMSS>/``). ``--report-from results.json`` runs nothing: it
writes REPORT.md and the charts again from that file's figures. ``beamish bench`` runs
``main(["--quick"])``; `run` is `main` without the table on stdout (the demo's way in).
``--peers`` adds the ``peers`` scenario (`._peers`: the same rows on Thespian, Pykka and,
when it is importable, Ray; ``pip install 'beamish[peers]'``), which no run has by default.

Exit status: 0 when every scenario ran and no process outlived the run, else 1.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import signal
import sys
import time
import traceback
from typing import Any

from . import _aclient, _cluster, _loaded, _peers
from ._batch import cast_many
from ._durability import durability
from ._kernel import describe
from ._report import Written, durability_section, target_verdicts, write_report
from ._scenarios import FULL, QUICK, Harness, log
from ._scenarios import SCENARIOS as _SCENARIOS
from ._sessions import sessions, table_rows, target_rows
from ._stats import machine_info

SCENARIOS = {**_SCENARIOS, "cast_many": cast_many, "durability": durability,
             "sessions": sessions, "aclient": _aclient.aclient, "loaded": _loaded.loaded,
             "peers": _peers.peers, "cluster": _cluster.cluster}
# Run only when asked for (--peers, or by name): it needs the peers' packages.
DEFAULT_SCENARIOS = [name for name in SCENARIOS if name != "peers"]
# Left out of quick runs unless named: it starts PostgreSQL and three nodes, and kills them.
FULL_ONLY = frozenset({"cluster"})


def _default_out() -> str:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    here = os.path.dirname(os.path.abspath(__file__))
    # From a checkout (or an editable install) results go beside the code, git-ignored;
    # an installed package's directory is no place for them.
    if "site-packages" in here.split(os.sep) or "dist-packages" in here.split(os.sep) \
            or not os.access(here, os.W_OK):
        return os.path.join(os.getcwd(), "beamish-bench-results", stamp)
    return os.path.join(here, "results", stamp)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="beamish versus plain threads (and the raw pyzmq floor), side by side.")
    parser.add_argument("--quick", action="store_true",
                        help="small sizes (well under 2 minutes on 2 cores)")
    parser.add_argument("--out", metavar="DIR", default=None,
                        help="where results.json, REPORT.md and the charts go "
                             "(default benchmarks/results/<YYYYmmdd-HHMMSS>/)")
    parser.add_argument("--report-from", metavar="RESULTS_JSON", default=None,
                        help="run nothing: write REPORT.md and the charts from this "
                             "results.json's figures (to --out, default beside the file)")
    parser.add_argument("--scenarios", default=",".join(DEFAULT_SCENARIOS),
                        help=f"comma list of scenarios to run (default: "
                             f"{','.join(DEFAULT_SCENARIOS)}; also: peers)")
    parser.add_argument("--peers", action="store_true",
                        help="also run the peers scenario: the same rows on Thespian, Pykka "
                             "and (when importable) Ray; pip install 'beamish[peers]'")
    parser.add_argument("--durability", choices=("process", "fsync", "memory"), default=None,
                        help="the beamish node's durability mode (default: the node's default)")
    parser.add_argument("--spawn-agents", default=None, metavar="N[,N...]",
                        help="agent counts of the spawn scenario (default 100; full: 100,1000)")
    args = parser.parse_args(argv)
    names = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    if args.quick and args.scenarios == parser.get_default("scenarios"):
        names = [s for s in names if s not in FULL_ONLY]
    if args.peers and "peers" not in names:
        names.append("peers")
    unknown = [s for s in names if s not in SCENARIOS]
    if unknown or not names:
        parser.error(f"unknown scenario(s) {', '.join(unknown) or '(none given)'}; "
                     f"choose from {', '.join(SCENARIOS)}")
    args.scenario_list = [s for s in SCENARIOS if s in names]  # canonical order
    if args.spawn_agents is not None:
        try:
            counts = tuple(int(x) for x in args.spawn_agents.split(",") if x.strip())
        except ValueError:
            counts = ()
        if not counts or min(counts) < 1:
            parser.error("--spawn-agents takes positive integers, e.g. 100,1000")
        args.spawn_agents = counts
    return args


def _num(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}×" if b else "—"


def markdown(results: dict[str, Any]) -> str:
    """The report table from ``results`` (as written to results.json)."""
    m = results["machine"]
    lines = [f"# beamish benchmarks ({results['mode']})", "",
             f"{m['date']} · {m['cpu_count']} CPUs · Python {m['python']} · "
             f"pyzmq {m['pyzmq']} (libzmq {m['libzmq']}) · beamish {results['beamish_version']}"
             f" · durability {results['config']['durability']} · "
             f"run took {results['duration_s']:.1f} s", "",
             "| scenario | figure | beamish | threads | raw pyzmq | beamish relative |",
             "| --- | --- | ---: | ---: | ---: | --- |"]
    row = lines.append
    sc = results["scenarios"]
    call = sc.get("call")
    if isinstance(call, dict) and "beamish" in call:
        raw = call.get("raw_zmq")
        for q in ("p50", "p99"):
            b, t = call["beamish"][f"{q}_us"], call["threads"][f"{q}_us"]
            r = raw[f"{q}_us"] if raw else None
            rel = f"{_ratio(b, r)} raw, " if r else ""
            row(f"| call round trip, 1 agent | {q} µs | {_num(b)} | {_num(t)} | {_num(r)} | "
                f"{rel}{_ratio(b, t)} threads |")
        for q in ("p50", "p99"):
            b, t = call["beamish_async"][f"{q}_us"], call["threads_async"][f"{q}_us"]
            row(f"| call, async def handler | {q} µs | {_num(b)} | {_num(t)} | — | "
                f"{_ratio(b, t)} threads |")
    cast = sc.get("cast")
    if isinstance(cast, dict) and "error" not in cast:
        for key, entry in cast.items():
            if not key.startswith("agents_"):
                continue
            b, t = entry["beamish"], entry["threads"]
            k = b["agents"]
            what = f"cast, {k} agent{'s' if k > 1 else ''}"
            row(f"| {what} | msgs/s (until handled) | {_num(b['msgs_per_s'])} | "
                f"{_num(t['msgs_per_s'])} | — | {_ratio(b['msgs_per_s'], t['msgs_per_s'])} "
                "threads |")
            row(f"| {what} | cast() p99 µs | {_num(b['cast_call']['p99_us'])} | "
                f"{_num(t['cast_call']['p99_us'])} | — | "
                f"{_ratio(b['cast_call']['p99_us'], t['cast_call']['p99_us'])} threads |")
    spawn = sc.get("spawn")
    if isinstance(spawn, dict) and "error" not in spawn:
        for key, entry in spawn.items():
            if not key.startswith("agents_"):
                continue
            b, t, n = entry["beamish"], entry["threads"], entry["agents"]
            row(f"| spawn {n} + 1 reply each | seconds | {_num(b['seconds'], 3)} | "
                f"{_num(t['seconds'], 3)} | — | {_ratio(b['seconds'], t['seconds'])} threads |")
            row(f"| spawn {n}, one spawn | p99 ms | {_num(b['spawn']['p99_us'] / 1000, 2)} | "
                f"{_num(t['spawn']['p99_us'] / 1000, 2)} | — | "
                f"{_ratio(b['spawn']['p99_us'], t['spawn']['p99_us'])} threads |")
            bm, tm = b["memory"], t["memory"]
            row(f"| {n} idle agents | USS MiB per agent (median) | "
                f"{_num(bm['uss_bytes_median'] / 2**20, 2)} | "
                f"{_num(tm['uss_bytes_per_agent'] / 2**20, 3)}* | — | |")
            row(f"| {n} idle agents | RSS MiB per agent (median) | "
                f"{_num(bm['rss_bytes_median'] / 2**20, 2)} | "
                f"{_num(tm['rss_bytes_per_agent'] / 2**20, 3)}* | — | |")
            if "pss_bytes_median" in bm:
                row(f"| {n} idle agents | PSS MiB per agent (median) | "
                    f"{_num(bm['pss_bytes_median'] / 2**20, 2)} | — | — | |")
    _isolation_rows(sc, row)
    lines.extend(table_rows(sc.get("sessions")))
    lines.extend(_aclient.table_rows(sc.get("aclient")))
    lines.extend(_loaded.table_rows(sc.get("loaded")))
    lines.extend(_cluster.table_rows(sc.get("cluster")))
    targets = _target_rows(sc)
    if targets:
        lines.extend(["", "## Targets: fault recovery, isolation, spawn, batched casts and "
                      "sessions (this machine, this run)", "",
                      "| target | figure | |", "| --- | --- | --- |", *targets])
    errors = {k: v["error"] for k, v in sc.items() if isinstance(v, dict) and "error" in v}
    lines.append("")
    if spawn and "error" not in spawn:
        lines.append("\\* threads: growth of the benchmark process's USS/RSS while the agent "
                     "threads were spawned, divided by their number.")
        for entry in spawn.values():
            busy = entry.get("beamish", {}).get("kernel_threads_cpu") if isinstance(
                entry, dict) else None
            if busy:
                lines.append(f"Spawn: with the {entry['agents']:,} agents alive and idle, kernel "
                             f"threads used {describe(busy)} of a core (not beamish's "
                             "processes; measured over 3 s). The spawned agents are deleted "
                             "before the next scenario.")
    if call:
        lines.append("Latencies: one caller thread, an idle agent, after a warm-up; the "
                     "runtimes alternate in blocks.")
    if isinstance(cast, dict) and "agents_1" in cast:
        b, t = cast["agents_1"]["beamish"], cast["agents_1"]["threads"]
        lines.append("msgs/s: from the first cast until every agent answered a call with its "
                     f"count; one sender thread; median of {b['repeats']} repeats of "
                     f"{b['messages_per_repeat']:,} (beamish) / {t['messages_per_repeat']:,} "
                     "(threads) messages. cast() p99: how long the sender's cast() took "
                     "(beamish returns once the message is committed to LMDB).")
    lines.extend(_isolation_notes(sc))
    lines.extend(_loaded.notes(sc.get("loaded")))
    lines.extend(_cluster.notes(sc.get("cluster")))
    tm = results.get("timings", {})
    if "beamish_node_shutdown_s" in tm:
        lines.append(f"beamish node: started in {tm['beamish_node_start_s']:.2f} s; shut down "
                     f"in {tm['beamish_node_shutdown_s']:.2f} s with "
                     f"{tm.get('beamish_agents_at_shutdown', '?')} agents.")
    for name, err in errors.items():
        lines.append(f"**{name} failed:** {err}")
    if results.get("leftover_processes"):
        lines.append(f"**{len(results['leftover_processes'])} process(es) outlived the run "
                     "and were killed.**")
    lines.extend(durability_section(sc.get("durability")))
    lines.extend(_peers.table_lines(sc.get("peers")))
    return "\n".join(lines) + "\n"


def _ok(entry: Any) -> bool:
    return isinstance(entry, dict) and "error" not in entry


def _fault_cell(r: dict[str, Any]) -> str:
    if r.get("process_died"):
        sig = f", {r['signal']}" if r.get("signal") else ""
        return f"process died (rc {r['returncode']}{sig})"
    back = "never" if r["recovery_ms"] is None else f"{r['recovery_ms']:.1f} ms"
    down = "" if r["downtime_ms"] is None else f" (down {r['downtime_ms']:,.0f} ms)"
    kept = "yes" if r["state_kept"] else "no"
    return (f"{r['survivors']['failed']} · {back}{down} · {kept} · {r['messages_lost']}")


def _isolation_rows(sc: dict[str, Any], row: Any) -> None:
    noisy = sc.get("noisy")
    if _ok(noisy):
        b, t = noisy["beamish"], noisy["threads"]
        for phase, label in (("idle", "echo call, idle"),
                             ("noisy", "echo call, a neighbour spinning")):
            for q in ("p50", "p99"):
                bv, tv = b[phase][f"{q}_us"], t[phase][f"{q}_us"]
                row(f"| {label} | {q} µs | {_num(bv)} | {_num(tv)} | — | "
                    f"{_ratio(bv, tv)} threads |")
        row(f"| noisy neighbour | p99 spinning / idle | {b['p99_noisy_over_idle']:.2f}× | "
            f"{t['p99_noisy_over_idle']:.2f}× | — | |")
    cpu = sc.get("cpu")
    if _ok(cpu):
        b, t = cpu["beamish"]["units_per_s"], cpu["threads"]["units_per_s"]
        row(f"| cpu-bound, {cpu['agents']} agents | work units/s | {_num(b)} | {_num(t)} | — | "
            f"{_ratio(b, t)} threads |")
    faults = sc.get("faults")
    if _ok(faults):
        for fault, r in faults["beamish"].items():
            tr = faults["threads"].get(fault, {})
            row(f"| fault: {fault.replace('_', ' ')} | survivors failed · back in · state "
                f"kept · acked lost | {_fault_cell(r)} | {_fault_cell(tr) if tr else '—'} | — "
                "| |")
        b, t = faults["beamish"]["infinite_loop"], faults["threads"].get("infinite_loop", {})
        if "survivors" in t and isinstance(t["survivors"].get("during"), dict):
            bv = b["survivors"]["during"]["p99_us"]
            tv = t["survivors"]["during"]["p99_us"]
            row(f"| fault: infinite loop | survivors' call p99 µs during it | {_num(bv)} | "
                f"{_num(tv)} | — | {_ratio(bv, tv)} threads |")
    k9 = sc.get("kill9")
    if _ok(k9):
        b, t = k9["beamish"], k9["threads"]
        row(f"| kill -9 whole node, restart | acknowledged casts lost | {b['lost']} of "
            f"{b['acked']:,} | {t['lost']} of {t['acked']:,} | — | |")


def _met(ok: bool) -> str:
    return "**met**" if ok else "**missed**"


def _target_rows(sc: dict[str, Any]) -> list[str]:
    """One row per isolation target: what it asks, this run's figure, met or missed."""
    out: list[str] = []
    spawn = sc.get("spawn")
    if _ok(spawn):
        for entry in spawn.values():
            if isinstance(entry, dict) and "target" in entry:
                t, b = entry["target"], entry["beamish"]
                out.append(f"| spawn: {t['what']} | {t['figure']:.2f} s (one spawn p50 "
                           f"{b['first_tenth']['p50_us'] / 1000:.1f} ms in the first tenth, "
                           f"{b['last_tenth']['p50_us'] / 1000:.1f} ms in the last) | "
                           f"{_met(t['met'])} |")
    faults = sc.get("faults")
    if _ok(faults) and "restart_target" in faults:
        t = faults["restart_target"]
        per = ", ".join(f"{f.replace('_', ' ')} {_num(v)}" for f, v in
                        t["p50_ms_per_fault"].items())
        never = f"; {t['never_answered']} trials never answered" if t["never_answered"] else ""
        out.append(f"| fault matrix: every faulty agent answering again within "
                   f"{t['target_ms']:g} ms at p50 (from its death; detection by a timeout or "
                   f"limit poll aside) | p50 per fault (ms): {per}; overall "
                   f"{_num(t['p50_ms_overall'])} ms over {t['trials']} trials{never} | "
                   f"{_met(t['met'])} |")
        b = faults["beamish"]
        failed = sum(r["survivors"]["failed"] for r in b.values())
        lost = sum(r["messages_lost"] for r in b.values())
        out.append(f"| fault matrix: 0 failed survivor calls, 0 acknowledged messages lost, "
                   f"state kept | {failed} failed, {lost} lost, state kept in "
                   f"{sum(1 for r in b.values() if r['state_kept'])}/{len(b)} faults | "
                   f"{_met(t['containment_met'])} |")
    noisy = sc.get("noisy")
    if _ok(noisy) and "target" in noisy:
        t, b = noisy["target"], noisy["beamish"]
        out.append(f"| noisy neighbour: {t['what']} | {t['figure']:.2f}× (p99 "
                   f"{_num(b['idle']['p99_us'])} → {_num(b['noisy']['p99_us'])} µs) | "
                   f"{_met(t['met'])} |")
    cpu = sc.get("cpu")
    if _ok(cpu) and "target" in cpu:
        t = cpu["target"]
        rounds = ", ".join(f"{r:.2f}×" for r in cpu.get("rounds_beamish_over_threads", []))
        out.append(f"| {t['what']} | {t['figure']:.2f}× (rounds: {rounds}) | "
                   f"{_met(t['met'])} |")
    batch = sc.get("cast_many")
    if _ok(batch):
        for key, entry in batch.items():
            if key.startswith("agents_"):
                t = entry["target"]
                out.append(f"| {t['what']}: >= {t['target_msgs_per_s']:,} msgs/s | "
                           f"{_num(t['figure'])} msgs/s (a loop of cast: "
                           f"{_num(entry['cast_loop']['msgs_per_s'])}) | {_met(t['met'])} |")
    out.extend(target_rows(sc.get("sessions")))
    out.extend(_aclient.target_rows(sc.get("aclient")))
    out.extend(_loaded.target_rows(sc.get("loaded")))
    out.extend(_cluster.target_rows(sc.get("cluster")))
    out.extend(_peers.target_rows(sc.get("peers")))
    return out


def _isolation_notes(sc: dict[str, Any]) -> list[str]:
    out: list[str] = []
    noisy = sc.get("noisy")
    if _ok(noisy):
        out.append(f"Noisy neighbour: one caller thread calls an echo agent, first idle, then "
                   f"while another agent spins the CPU in pure Python for "
                   f"{noisy['spin_seconds']:g} s (started with a cast).")
    cpu = sc.get("cpu")
    if _ok(cpu):
        out.append(f"cpu-bound: each unit is a pure-Python loop of {cpu['work_per_unit']:,} "
                   f"additions; one core of this process does "
                   f"{cpu['one_core_units_per_s']:.1f} units/s (so the ideal for "
                   f"{cpu['agents']} agents is {cpu['agents']}× that).")
        if cpu.get("kernel_threads_cpu"):
            out.append(f"During the cpu rounds, kernel threads used "
                       f"{describe(cpu['kernel_threads_cpu'])} of a core, which the agents "
                       "could not have.")
    faults = sc.get("faults")
    if _ok(faults):
        out.append(f"Faults: {faults['survivor_agents']} survivor agents are called in a loop "
                   f"by a background thread throughout; the faulty agent has "
                   f"{faults['casts_before_fault']} acknowledged casts before the fault and 10 "
                   "more cast during it. On beamish each fault runs "
                   f"{faults.get('trials_per_fault', 1)} times (fresh agents each time): the "
                   "times are medians, failures and losses totals. *back in*: from the last "
                   "moment the faulty process was alive (it stamps the time into shared "
                   "memory just before the fault and at every step of a bomb or loop; for "
                   "SIGKILL, the kill) until it answered the benchmark's next call (made during the "
                   "fault, it waits in the mailbox behind it); *down*: "
                   "from the fault's injection (it includes the retries of the fatal message "
                   "and the time a limit takes to notice). On beamish a call that crashes the agent is "
                   "retried up to 3 times before its caller gets RemoteError (the memory bomb "
                   "runs with Limits(memory_mb=200), the infinite loop with "
                   "Limits(handler_timeout=0.5)). On threads each fault runs in a subprocess; "
                   "*process died* is its measured return code: every agent, its state and "
                   "its mailbox went with it. Threads cannot kill a thread: the "
                   f"infinite loop is bounded to {faults['thread_spin_s']:g} s there, and "
                   "their memory bomb runs under an RLIMIT_AS on the whole process (a thread "
                   "cannot have its own limit).")
    if _ok(faults):
        split = [f"{f.replace('_', ' ')} {r['phases_ms']['exited']:.1f} + "
                 f"{r['phases_ms']['restarted']:.1f} + {r['phases_ms']['answered']:.1f}"
                 for f, r in faults["beamish"].items() if r.get("phases_ms")]
        if split:
            out.append("Back in on beamish, split by the node's events (medians, ms): death → "
                       "`exited` (the process's exit, its reap, the classification) + → "
                       "`restarted` (the decision, the fork, init or recover until ready) + → "
                       "the answer: " + "; ".join(split) + ".")
    k9 = sc.get("kill9")
    if _ok(k9):
        b = k9["beamish"]
        out.append(f"kill -9: one sender thread casts to a Counter; after "
                   f"{b['acked_at_kill']:,} acknowledged casts the node daemon is SIGKILLed "
                   f"({b['orphans_after_kill']} agent processes outlived it); the sender goes "
                   f"on for 0.5 s ({b['acked_after_kill']:,} more casts acknowledged, sender "
                   f"error: {b['sender_error']}); the node is started again on the same dir "
                   f"({b['restart_s']:.2f} s) and the Counter's count compared with every "
                   "acknowledged cast. Threads: the same in a subprocess that is SIGKILLed, "
                   "then a new one.")
    return out


def render(results: dict[str, Any], results_path: str, out_dir: str) -> Written:
    """Write REPORT.md and the charts of ``results`` (as in results.json, read from
    ``results_path``) to ``out_dir``; return what was written."""
    table = markdown(results)
    charts = write_report(results, table, out_dir)
    out = os.path.abspath(out_dir)
    return Written(out_dir=out, results=os.path.abspath(results_path),
                   report=os.path.join(out, "REPORT.md"),
                   charts=tuple(os.path.join(out, name) for name in charts),
                   table=table, targets=target_verdicts(table))


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks, print the report's table; return the exit status (see the
    module docstring)."""
    status, written = run(argv)
    if written is not None:
        sys.stdout.write(written.table)
        sys.stdout.flush()
    return status


def run(argv: list[str] | None = None) -> tuple[int, Written | None]:
    """Run the benchmarks (or re-render, with ``--report-from``) and write their files;
    return the exit status and what was written (None when ``argv`` was bad or asked for
    ``--help``)."""
    try:
        args = _parse(argv)
    except SystemExit as exc:  # --help, or bad arguments (argparse printed why)
        return (exc.code if isinstance(exc.code, int) else 2), None
    if args.report_from is not None:
        with open(args.report_from) as fh:
            old = json.load(fh)
        out = args.out or os.path.dirname(os.path.abspath(args.report_from))
        os.makedirs(out, exist_ok=True)
        written = render(old, args.report_from, out)
        _log_written(written)
        return 0, written
    sizes = QUICK if args.quick else FULL
    if args.spawn_agents is not None:
        from dataclasses import replace
        sizes = replace(sizes, spawn_agents=args.spawn_agents)
    out_dir = args.out or _default_out()
    try:
        from importlib.metadata import version
        beamish_version = version("beamish")
    except Exception:  # noqa: BLE001 - a checkout without metadata
        beamish_version = "unknown"
    results: dict[str, Any] = {
        "mode": "quick" if args.quick else "full",
        "argv": list(sys.argv[1:] if argv is None else argv),
        "beamish_version": beamish_version,
        "machine": machine_info(),
        "config": {"durability": args.durability or "default", "sizes": vars(sizes),
                   "scenarios": args.scenario_list},
        "scenarios": {},
    }
    started = time.perf_counter()
    log(f"[bench] {results['mode']} run: {', '.join(args.scenario_list)}; results to {out_dir}")

    previous = None
    if os.name == "posix" and _is_main_thread():
        def on_term(signum: int, frame: Any) -> None:
            raise KeyboardInterrupt(f"signal {signum}")
        previous = signal.signal(signal.SIGTERM, on_term)
    failed = False
    harness = Harness(durability=args.durability)
    try:
        if {"call", "durability", "peers"} & set(args.scenario_list):
            harness.start_raw()  # forks: before this process has any ZeroMQ context
        harness.start()
        for name in args.scenario_list:
            t0 = time.perf_counter()
            log(f"[{name}] start")
            try:
                figures = SCENARIOS[name](harness, sizes)
            except Exception as exc:  # noqa: BLE001 - report it, run the others
                failed = True
                figures = {"error": f"{type(exc).__name__}: {exc}",
                           "traceback": traceback.format_exc()}
                log(f"[{name}] FAILED: {figures['error']}")
            figures["scenario_seconds"] = time.perf_counter() - t0
            results["scenarios"][name] = figures
            log(f"[{name}] done in {figures['scenario_seconds']:.1f} s")
    finally:
        log("[bench] shutting down")
        try:
            harness.close()
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
    results["timings"] = harness.timings
    results["leftover_processes"] = harness.leftovers
    results["duration_s"] = time.perf_counter() - started
    try:
        results["machine"]["loadavg_at_end"] = list(os.getloadavg())
    except OSError:
        pass
    os.makedirs(out_dir, exist_ok=True)
    results_path = os.path.join(out_dir, "results.json")
    with open(results_path, "w") as fh:
        json.dump(results, fh, indent=2, default=str)
        fh.write("\n")
    written = render(results, results_path, out_dir)
    log(f"[bench] done in {results['duration_s']:.1f} s")
    _log_written(written)
    return (1 if failed or harness.leftovers else 0), written


def _log_written(written: Written) -> None:
    log(f"[bench] figures: {written.results}")
    log(f"[bench] report:  {written.report}")
    for path in written.charts:
        log(f"[bench] chart:   {path}")


def _is_main_thread() -> bool:
    import threading
    return threading.current_thread() is threading.main_thread()


if __name__ == "__main__":
    sys.exit(main())
