"""The durability scenario: its three targets (the cost of durable casts and calls, recovery
from SIGKILL), measured in one run.

1. Cast throughput to one agent on a ``durability="process"`` node, against the same on a
   ``durability="memory"`` node (target: at least 50% of it); ``"fsync"`` as a third,
   informative row.
2. Call p50 on the process-mode node against the raw pyzmq DEALER <-> ROUTER round trip
   between two processes (target: within 2x).
3. A SIGKILLed agent answering its next call with its kept state (target: 20 ms at p50).

Three nodes of their own (one per mode, each in a temp dir) run side by side and the
modes alternate in every measurement, so drift in a shared machine's speed lands on all
alike. The nodes are shut down at the end and every process they had is checked gone.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time
from collections.abc import Callable
from typing import Any

import msgpack
import psutil

from . import agents
from ._isolation import _tree_pids, kill_leftovers
from ._scenarios import (
    CALL_TIMEOUT_S,
    MESSAGE,
    QUICK,
    _caller,
    _cast_round,
    _raw_caller,
    log,
    time_in_blocks,
)
from ._stats import latency_summary, median

MODES = ("process", "memory", "fsync")
# An fsync commit costs milliseconds on a real disk: that mode gets this fraction of the
# samples (it is informative, not a target) so that it does not dominate the run.
FSYNC_SHARE = 20
CAST_TARGET = 0.5  # process-mode msgs/s over memory-mode msgs/s, at least
CALL_TARGET = 2.0  # process-mode call p50 over the raw pyzmq p50, at most
KILL_TARGET_MS = 20.0  # kill -> the next call's reply with the kept state, p50, at most


def _kill_trials(sizes: Any) -> int:
    return 10 if sizes.call_samples <= QUICK.call_samples else 30


def _filesystem(path: str) -> str:
    """The filesystem type ``path`` lives on (fsync figures mean little on tmpfs)."""
    best, fstype = "", "?"
    real = os.path.realpath(path)
    for part in psutil.disk_partitions(all=True):
        mount = part.mountpoint
        if (real == mount or real.startswith(mount.rstrip("/") + "/")) \
                and len(mount) > len(best):
            best, fstype = mount, part.fstype
    return fstype


class _Nodes:
    """One node per durability mode, each in its own temp dir; `close` shuts them down,
    kills (and reports in ``leftovers``) any process that outlived that, removes the dirs."""

    def __init__(self) -> None:
        self.base = tempfile.mkdtemp(prefix="bm-dur-", dir="/tmp")
        self.nodes: dict[str, Any] = {}
        self.seen: dict[int, psutil.Process] = {}
        self.leftovers: list[dict[str, Any]] = []
        self.start_s: dict[str, float] = {}
        self._memory_store = ""

    def start(self) -> None:
        from beamish.runtime import start_node
        from beamish.runtime.store import memory_path
        for mode in MODES:
            d = os.path.join(self.base, mode[0])
            t0 = time.perf_counter()
            self.nodes[mode] = start_node(d, durability=mode)
            self.start_s[mode] = time.perf_counter() - t0
            if mode == "memory":
                self._memory_store = memory_path(d)
        self.watch()

    def watch(self) -> None:
        """Remember every process the nodes have now (checked gone in `close`)."""
        for node in self.nodes.values():
            for p in _tree_pids(node.pid):
                self.seen.setdefault(p.pid, p)

    def close(self) -> None:
        try:
            self.watch()
        finally:
            for mode, node in self.nodes.items():
                try:
                    node.shutdown()
                except Exception as exc:  # noqa: BLE001 - the others still get stopped
                    log(f"[durability] the {mode} node did not shut down: "
                        f"{type(exc).__name__}: {exc}")
            kill_leftovers(self.seen.values(), "durability scenario", self.leftovers)
            if self._memory_store and os.path.exists(self._memory_store):
                self.leftovers.append({"pid": None,
                                       "cmdline": f"memory store left: {self._memory_store}"})
                shutil.rmtree(self._memory_store, ignore_errors=True)
            shutil.rmtree(self.base, ignore_errors=True)


# -- target 1: cast throughput ------------------------------------------------------------------
def _casts(nodes: dict[str, Any], sizes: Any) -> dict[str, Any]:
    counts = {m: sizes.cast_messages if m != "fsync"
              else max(200, sizes.cast_messages // FSYNC_SHARE) for m in MODES}
    names = {m: nodes[m].spawn(agents.COUNTER, name="dur-cnt").name for m in MODES}
    for m in MODES:
        warm = sizes.cast_warmup if m != "fsync" else max(50, sizes.cast_warmup // FSYNC_SHARE)
        _cast_round(nodes[m].cast, nodes[m].call, [names[m]], warm)
    rounds: dict[str, list[dict[str, Any]]] = {m: [] for m in MODES}
    for rep in range(sizes.cast_repeats):
        shift = rep % len(MODES)
        for m in MODES[shift:] + MODES[:shift]:
            rounds[m].append(_cast_round(nodes[m].cast, nodes[m].call, [names[m]], counts[m]))
    out: dict[str, Any] = {}
    for m, rs in rounds.items():
        rates = [r["msgs_per_s"] for r in rs]
        out[m] = {"messages_per_repeat": counts[m], "repeats": len(rs),
                  "msgs_per_s": median(rates), "msgs_per_s_min": min(rates),
                  "msgs_per_s_max": max(rates),
                  "cast_call": {"p50_us": median([r["cast_call"]["p50_us"] for r in rs]),
                                "p99_us": median([r["cast_call"]["p99_us"] for r in rs])},
                  "rounds": rs}
        log(f"[durability] cast {m:8s} {median(rates):9,.0f} msgs/s (min {min(rates):,.0f}, "
            f"max {max(rates):,.0f}; {counts[m]:,} per repeat); cast() p50 "
            f"{out[m]['cast_call']['p50_us']:.1f} µs")
    # Each repeat's process and memory rounds ran back to back: their ratio shows the noise.
    out["process_over_memory_by_repeat"] = [
        p["msgs_per_s"] / q["msgs_per_s"] for p, q in zip(rounds["process"], rounds["memory"],
                                                          strict=True)]
    return out


# -- target 2: call p50 against the raw pyzmq round trip -----------------------------------------
def _calls(nodes: dict[str, Any], raw: Any, sizes: Any) -> dict[str, Any]:
    contenders: dict[str, Callable[[Any], Any]] = {}
    expected: dict[str, Any] = {}
    payload: bytes = msgpack.packb(MESSAGE)
    if raw is not None:
        if raw.sock is None:  # the call scenario, when it ran first, connected it already
            raw.connect()
        contenders["raw_zmq"] = _raw_caller(raw, payload)
        expected["raw_zmq"] = payload
    for m in MODES:
        contenders[m] = _caller(nodes[m].spawn(agents.ECHO, name="dur-echo"))
        expected[m] = MESSAGE
    share = {k: FSYNC_SHARE if k == "fsync" else 1 for k in contenders}
    for key, fn in contenders.items():
        if fn(MESSAGE) != expected[key]:
            raise AssertionError(f"{key}: the echo did not echo")
        for _ in range(max(20, sizes.call_warmup // share[key])):
            fn(MESSAGE)
    samples = time_in_blocks(contenders, sizes, share)
    out: dict[str, Any] = {"blocks": sizes.call_blocks, "message_bytes": len(payload)}
    for key, ns in samples.items():
        out[key] = latency_summary(ns)
        log(f"[durability] call {key:8s} p50 {out[key]['p50_us']:8.1f} µs  p99 "
            f"{out[key]['p99_us']:8.1f} µs  (n={out[key]['n']})")
    return out


# -- target 3: a SIGKILLed agent back with its state ---------------------------------------------
def _kill_recovery(n: Any, trials: int, watch: Callable[[], None]) -> dict[str, Any]:
    # Its own supervisor: the root's default intensity (3 restarts in 5 s) would mark the
    # agent failed after the third kill in a row. The limit is raised, not the restart path.
    n.add_supervisor("dur-sup", max_restarts=2 * trials + 10, max_seconds=5.0)
    name = n.spawn(agents.FLAKY, name="dur-kill", supervisor="dur-sup").name
    last = n.call(name, "count", CALL_TIMEOUT_S)
    ms: list[float] = []
    kept: list[bool] = []
    for _ in range(trials):
        for _ in range(20):  # the process about to be killed is warm, like a real one
            last = n.call(name, "inc", CALL_TIMEOUT_S)
        before = n.info(name)
        if before.status != "running" or before.pid is None:
            raise AssertionError(f"{name} is {before.status} before a kill")
        time.sleep(0.02)  # the node is idle when the kill lands
        t0 = time.perf_counter_ns()
        os.kill(before.pid, signal.SIGKILL)
        # The call goes into the durable mailbox while the agent is dead; the restarted
        # process takes it. Flaky answers "inc" with its count after the increment.
        reply = n.call(name, "inc", CALL_TIMEOUT_S)
        ms.append((time.perf_counter_ns() - t0) / 1e6)
        after = n.info(name)
        if after.pid == before.pid or after.restarts != before.restarts + 1:
            raise AssertionError(f"trial not valid: pid {before.pid} -> {after.pid}, restarts "
                                 f"{before.restarts} -> {after.restarts}")
        kept.append(reply == last + 1)
        last = reply
        watch()
    summary = latency_summary([int(x * 1e6) for x in ms])
    out = {"trials": trials, "p50_ms": summary["p50_us"] / 1000,
           "p99_ms": summary["p99_us"] / 1000, "max_ms": summary["max_us"] / 1000,
           "min_ms": min(ms), "trials_ms": ms, "state_kept": kept,
           "state_kept_all": all(kept), "state_kept_count": sum(kept),
           "how": "os.kill(pid from node.info, SIGKILL), then at once a call that increments "
                  "the agent's count; time from the kill to its reply; state kept when the "
                  "reply is the count before the kill + 1"}
    log(f"[durability] kill -9 -> next reply: p50 {out['p50_ms']:.1f} ms, p99 "
        f"{out['p99_ms']:.1f} ms, max {out['max_ms']:.1f} ms; state kept in "
        f"{sum(kept)}/{trials} trials")
    return out


def _targets(res: dict[str, Any]) -> dict[str, Any]:
    cast, call, kill = res["cast"], res["call"], res["kill"]
    ratio = cast["process"]["msgs_per_s"] / cast["memory"]["msgs_per_s"]
    targets: dict[str, Any] = {
        "cast_throughput": {
            "target": f"durable (process) cast msgs/s to one agent >= {CAST_TARGET:.0%} of "
                      "memory mode", "figure": ratio, "bound": CAST_TARGET,
            "met": ratio >= CAST_TARGET, "process_msgs_per_s": cast["process"]["msgs_per_s"],
            "memory_msgs_per_s": cast["memory"]["msgs_per_s"]},
        "call_p50": {
            "target": f"durable (process) call p50 <= {CALL_TARGET:g}x the raw pyzmq round "
                      "trip", "bound": CALL_TARGET,
            "process_p50_us": call["process"]["p50_us"]},
        "kill_recovery": {
            "target": f"SIGKILLed agent answers its next call with its state, p50 <= "
                      f"{KILL_TARGET_MS:g} ms", "figure": kill["p50_ms"],
            "bound": KILL_TARGET_MS,
            "met": kill["p50_ms"] <= KILL_TARGET_MS and kill["state_kept_all"],
            "state_kept_all": kill["state_kept_all"]},
    }
    if "raw_zmq" in call:
        over = call["process"]["p50_us"] / call["raw_zmq"]["p50_us"]
        targets["call_p50"].update(figure=over, met=over <= CALL_TARGET,
                                   raw_p50_us=call["raw_zmq"]["p50_us"])
    else:
        targets["call_p50"].update(figure=None, met=None,
                                   note="the raw pyzmq server was not started")
    return targets


def durability(h: Any, sizes: Any) -> dict[str, Any]:
    """The three durability targets on nodes of each durability mode (see the module doc)."""
    nodes = _Nodes()
    res: dict[str, Any] = {}
    try:
        nodes.start()
        log("[durability] nodes started: " + ", ".join(
            f"{m} {s:.2f} s" for m, s in nodes.start_s.items()))
        res["node_start_s"] = dict(nodes.start_s)
        res["filesystem"] = {"process": _filesystem(nodes.base),
                             "fsync": _filesystem(nodes.base),
                             "memory": _filesystem(nodes._memory_store or "/dev/shm")}
        res["cast"] = _casts(nodes.nodes, sizes)
        res["call"] = _calls(nodes.nodes, h.raw, sizes)
        res["kill"] = _kill_recovery(nodes.nodes["process"], _kill_trials(sizes), nodes.watch)
    finally:
        nodes.close()
        h.leftovers.extend(nodes.leftovers)
    res["leftover_processes"] = nodes.leftovers
    res["targets"] = _targets(res)
    for key, t in res["targets"].items():
        verdict = {True: "met", False: "MISSED", None: "not measured"}[t["met"]]
        log(f"[durability] target {key}: {verdict} ({t['target']}; figure "
            f"{'—' if t['figure'] is None else format(t['figure'], '.2f')})")
    return res
