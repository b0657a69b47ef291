"""The ``loaded`` scenario: an idle agent's call latency while 100 agents are busy on casts.

One caller thread calls an idle Echo agent, in rounds that alternate between two phases:
*unloaded* (nothing else runs) and *loaded* (4 sender processes, each `connect` ed to the
node, cast round-robin to their 25 of 100 Counter agents as fast as they can). The target:
the idle agent's call p99 loaded is at most 3× its p99 unloaded, both from this run.

The senders start once and are paused between the loaded phases (a flag byte in a shared
file they read before every cast); after a pause, the busy agents are called for their
counts, which they answer only once every cast before has been handled: the unloaded
phase starts with their mailboxes empty. A loaded phase starts 0.3 s after the senders
resumed, so that it samples a load that has built up.

``python -m benchmarks._loaded sender DIR FLAG NAME...`` is one sender (the scenario starts
them); it prints ``{"ready": pid}`` once connected and ``{"casts": n, "errors": {...}}`` on
stdout when the flag says stop.
"""

from __future__ import annotations

import json
import mmap
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any

from . import agents
from ._stats import latency_summary

CALL_TIMEOUT_S = 60.0
BUSY_AGENTS = 100
SENDERS = 4
TARGET_RATIO = 3.0  # target: loaded p99 <= 3x unloaded p99
SETTLE_S = 0.3  # from the senders' resuming to the first loaded sample
PAUSE, RUN, STOP = 0, 1, 2


@dataclass(frozen=True, slots=True)
class LoadedSizes:
    """How big the scenario is."""

    rounds: int  # each: one unloaded and one loaded phase (their order alternates)
    samples: int  # calls per phase


QUICK = LoadedSizes(rounds=3, samples=600)
FULL = LoadedSizes(rounds=6, samples=2000)


def loaded_sizes(sizes: Any) -> LoadedSizes:
    """The sizes for a run of ``sizes`` (quick when its call samples are few);
    ``sizes.loaded_sizes`` when it has one (the tests' tiny run)."""
    given = getattr(sizes, "loaded_sizes", None)
    if isinstance(given, LoadedSizes):
        return given
    return QUICK if getattr(sizes, "call_samples", 0) < 10_000 else FULL


def _log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# -- a sender process -------------------------------------------------------------------------
def sender(node_dir: str, flag_path: str, names: list[str]) -> dict[str, Any]:
    """Cast round-robin to ``names`` while the flag byte says RUN; wait while it says
    PAUSE; return what was sent when it says STOP."""
    from beamish.runtime import connect
    fd = os.open(flag_path, os.O_RDONLY)
    try:
        flag = mmap.mmap(fd, 1, prot=mmap.PROT_READ)
    finally:
        os.close(fd)
    node = connect(node_dir)
    print(json.dumps({"ready": os.getpid()}), flush=True)
    casts = 0
    errors: dict[str, int] = {}
    try:
        k = len(names)
        while True:
            state = flag[0]
            if state == STOP:
                break
            if state == PAUSE:
                time.sleep(0.005)
                continue
            try:
                node.cast(names[casts % k], "incr")
                casts += 1
            except Exception as exc:  # noqa: BLE001 - counted and reported
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                time.sleep(0.01)
    finally:
        node.close()
        flag.close()
    return {"casts": casts, "errors": errors}


# -- the scenario -----------------------------------------------------------------------------
class _Senders:
    """`SENDERS` sender processes and the flag byte they obey."""

    def __init__(self, node_dir: str, work_dir: str, names: list[str]) -> None:
        self.flag_path = os.path.join(work_dir, "loaded-flag")
        with open(self.flag_path, "wb") as fh:
            fh.write(bytes([PAUSE]))
        fd = os.open(self.flag_path, os.O_RDWR)
        try:
            self.flag = mmap.mmap(fd, 1)
        finally:
            os.close(fd)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p or os.getcwd() for p in sys.path)
        share = len(names) // SENDERS
        self.procs = [subprocess.Popen(
            [sys.executable, "-m", f"{__package__}._loaded", "sender", node_dir,
             self.flag_path, *names[i * share:(i + 1) * share]],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True, env=env)
            for i in range(SENDERS)]
        for proc in self.procs:  # connected: none is starting up during a phase
            assert proc.stdout is not None
            if not proc.stdout.readline():
                self.stop()
                raise RuntimeError(f"a sender process exited before it was ready "
                                   f"(rc {proc.wait()})")

    def set(self, state: int) -> None:
        self.flag[0] = state

    def stop(self, timeout: float = 60.0) -> list[dict[str, Any]]:
        """Tell the senders to stop; return what each sent (SIGKILL after ``timeout``)."""
        if self.flag.closed:
            return []
        self.set(STOP)
        out: list[dict[str, Any]] = []
        for proc in self.procs:
            try:
                text, _ = proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                text, _ = proc.communicate()
            try:
                out.append(json.loads(text.strip().splitlines()[-1]))
            except (ValueError, IndexError):
                out.append({"casts": 0, "errors": {"no report": 1}, "returncode": proc.returncode})
        self.flag.close()
        os.unlink(self.flag_path)
        return out


def _sample(call: Any, name: str, n: int) -> list[int]:
    out: list[int] = []
    clock = time.perf_counter_ns
    for i in range(n):
        msg = {"seq": i, "text": "ping"}
        t0 = clock()
        call(name, msg, CALL_TIMEOUT_S)
        out.append(clock() - t0)
    return out


def loaded(h: Any, sizes: Any) -> dict[str, Any]:
    """The idle agent's call p50/p99, unloaded and with 100 agents busy on casts from 4
    sender processes; the p99 ratio against the 3× target."""
    assert h.node is not None
    node = h.node
    sz = loaded_sizes(sizes)
    busy = [node.spawn(agents.COUNTER, name=h.name("busy")).name for _ in range(BUSY_AGENTS)]
    idle = node.spawn(agents.ECHO, name=h.name("idle")).name
    h.beamish_agents += BUSY_AGENTS + 1
    for _ in range(200):  # warm: the idle agent has answered before it is measured
        node.call(idle, {"seq": 0, "text": "ping"}, CALL_TIMEOUT_S)
    samples: dict[str, list[int]] = {"unloaded": [], "loaded": []}
    rounds: list[dict[str, float]] = []
    loaded_s = 0.0
    senders = _Senders(node.dir, h.node_dir or node.dir, busy)
    reports: list[dict[str, Any]] = []
    try:
        for r in range(sz.rounds):
            p99: dict[str, float] = {}
            for phase in (("unloaded", "loaded") if r % 2 == 0 else ("loaded", "unloaded")):
                if phase == "loaded":
                    senders.set(RUN)
                    time.sleep(SETTLE_S)
                    t0 = time.perf_counter()
                    ns = _sample(node.call, idle, sz.samples)
                    loaded_s += time.perf_counter() - t0
                    senders.set(PAUSE)
                    for name in busy:  # drained: each answers after its last cast
                        node.call(name, "count", CALL_TIMEOUT_S)
                else:
                    ns = _sample(node.call, idle, sz.samples)
                samples[phase].extend(ns)
                p99[phase] = latency_summary(ns)["p99_us"]
            rounds.append(p99)
            _log(f"[loaded] round {r + 1}: idle agent's call p99 unloaded "
                 f"{p99['unloaded']:.0f} µs, loaded {p99['loaded']:.0f} µs")
    finally:
        reports = senders.stop()
    handled = sum(node.call(name, "count", CALL_TIMEOUT_S) for name in busy)
    for name in [*busy, idle]:
        node.delete(name)
    h.beamish_agents -= BUSY_AGENTS + 1
    sent = sum(rep["casts"] for rep in reports)
    errors: dict[str, int] = {}
    for rep in reports:
        for k, v in rep.get("errors", {}).items():
            errors[k] = errors.get(k, 0) + v
    if handled != sent:
        raise AssertionError(f"{sent} casts acknowledged by the senders, {handled} handled")
    un, lo = latency_summary(samples["unloaded"]), latency_summary(samples["loaded"])
    ratio = lo["p99_us"] / un["p99_us"]
    out: dict[str, Any] = {
        "busy_agents": BUSY_AGENTS, "senders": SENDERS, "sizes": asdict(sz),
        "unloaded": un, "loaded": lo, "p99_ratio": ratio, "p50_ratio": lo["p50_us"] / un["p50_us"],
        "rounds": rounds,
        "rounds_p99_ratio": [x["loaded"] / x["unloaded"] for x in rounds],
        "casts_sent": sent, "casts_handled": handled, "sender_errors": errors,
        "casts_per_s_while_loaded": sent / loaded_s if loaded_s else None,
        "target": {"what": f"an idle agent's call p99 with {BUSY_AGENTS} agents busy on casts "
                           f"from {SENDERS} sender processes, over its unloaded p99",
                   "target_ratio": TARGET_RATIO, "figure": ratio, "met": ratio <= TARGET_RATIO},
    }
    _log(f"[loaded] {sent:,} casts from {SENDERS} senders (~{out['casts_per_s_while_loaded'] or 0:,.0f}/s "
         f"while loaded), all handled; p99 {un['p99_us']:.0f} -> {lo['p99_us']:.0f} µs: "
         f"{ratio:.2f}× (target <= {TARGET_RATIO:g}×: {'met' if ratio <= TARGET_RATIO else 'MISSED'})")
    return out


def table_rows(entry: Any) -> list[str]:
    """The scenario's rows of the report's main table (none if it did not run)."""
    if not isinstance(entry, dict) or "target" not in entry:
        return []
    un, lo = entry["unloaded"], entry["loaded"]
    what = (f"call to an idle agent, {entry['busy_agents']} agents busy on casts from "
            f"{entry['senders']} sender processes")
    return [f"| {what} | p50 µs | {lo['p50_us']:,.1f} | — | — | unloaded {un['p50_us']:,.1f} "
            f"({entry['p50_ratio']:.2f}×) |",
            f"| {what} | p99 µs | {lo['p99_us']:,.1f} | — | — | unloaded {un['p99_us']:,.1f} "
            f"({entry['p99_ratio']:.2f}×) |"]


def target_rows(entry: Any) -> list[str]:
    """The scenario's row of the targets table (none if it did not run)."""
    if not isinstance(entry, dict) or "target" not in entry:
        return []
    t, un, lo = entry["target"], entry["unloaded"], entry["loaded"]
    rounds = ", ".join(f"{r:.2f}×" for r in entry["rounds_p99_ratio"])
    rate = entry.get("casts_per_s_while_loaded")
    load = f"; {rate:,.0f} casts/s while loaded" if rate else ""
    return [f"| {t['what']}: ≤ {t['target_ratio']:g}× | {t['figure']:.2f}× (p99 "
            f"{un['p99_us']:,.0f} → {lo['p99_us']:,.0f} µs; rounds: {rounds}{load}) | "
            f"{'**met**' if t['met'] else '**missed**'} |"]


def notes(entry: Any) -> list[str]:
    """The scenario's paragraph under the table."""
    if not isinstance(entry, dict) or "target" not in entry:
        return []
    sz = entry["sizes"]
    return [f"Loaded: one caller thread calls an idle Echo agent, {sz['samples']:,} calls per "
            f"phase, {sz['rounds']} rounds alternating an unloaded phase and a loaded one, "
            f"where {entry['senders']} sender processes (each its own `connect`) cast "
            f"round-robin to {entry['busy_agents']} Counter agents as fast as they can; the "
            f"busy agents' mailboxes are drained before each unloaded phase. "
            f"{entry['casts_sent']:,} casts were sent and all handled."]


def main(argv: list[str]) -> int:
    """``sender DIR FLAG NAME...``: one sender process."""
    if len(argv) < 4 or argv[0] != "sender":
        print("usage: python -m benchmarks._loaded sender DIR FLAG NAME...", file=sys.stderr)
        return 2
    print(json.dumps(sender(argv[1], argv[2], argv[3:])), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
