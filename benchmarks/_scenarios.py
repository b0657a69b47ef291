"""The scenarios: each measures beamish and the threads runtime side by side, in one run.

Every figure comes from a measurement made here; nothing is assumed. Where the two
runtimes are measured in turn, they alternate in blocks (and rotate who goes first) so
that drift in a noisy machine's speed lands on both alike.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import msgpack
import psutil

from . import _isolation, agents
from ._kernel import describe, kernel_threads_cpu, kernel_threads_snapshot
from ._raw import RawEcho
from ._stats import latency_summary, median
from .threads_runtime import ThreadsNode

CALL_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Sizes:
    """How much work each scenario does (``--quick`` or full)."""

    call_warmup: int
    call_samples: int  # per runtime
    call_blocks: int  # the samples come in this many alternating blocks
    cast_warmup: int
    cast_messages: int  # beamish, per repeat (casts are durable commits: slower)
    cast_messages_threads: int  # threads, per repeat (same agents, in memory)
    cast_repeats: int
    cast_agents: tuple[int, ...]
    spawn_agents: tuple[int, ...]
    noisy_samples: int = 3000  # per phase (idle, spinning), capped by noisy_spin_s
    noisy_spin_s: float = 3.0  # how long the neighbour spins
    cpu_agents: int = 2
    cpu_work: int = 1_000_000  # loop iterations per unit (~50 ms: a message's cost is <1%)
    cpu_target_s: float = 1.0  # CPU seconds of work per agent per round
    cpu_repeats: int = 2
    fault_casts: int = 50  # acknowledged casts to the faulty agent before the fault
    fault_trials: int = 3  # trials of each fault on beamish (for a p50 of its restart)
    thread_spin_s: float = 2.0  # the threads runtime's bounded "infinite" loop
    kill9_casts: int = 300  # acknowledged casts before the node is SIGKILLed


QUICK = Sizes(call_warmup=300, call_samples=3000, call_blocks=6, cast_warmup=200,
              cast_messages=3000, cast_messages_threads=30000, cast_repeats=3,
              cast_agents=(1, 10), spawn_agents=(100,), noisy_samples=3000,
              noisy_spin_s=3.0, cpu_target_s=1.0, cpu_repeats=2, fault_casts=50, fault_trials=3,
              thread_spin_s=2.0, kill9_casts=300)
FULL = Sizes(call_warmup=2000, call_samples=20000, call_blocks=20, cast_warmup=1000,
             cast_messages=20000, cast_messages_threads=200000, cast_repeats=5,
             cast_agents=(1, 100), spawn_agents=(100, 1000), noisy_samples=20000,
             noisy_spin_s=8.0, cpu_target_s=3.0, cpu_repeats=5, fault_casts=500, fault_trials=9,
             thread_spin_s=4.0, kill9_casts=2000)

MESSAGE = {"seq": 0, "text": "ping"}


def log(text: str) -> None:
    """A progress line on stderr."""
    print(text, file=sys.stderr, flush=True)


class Harness:
    """The runtimes under test for one run: a beamish node, a threads node, the raw
    echo server. Everything it starts, `close` stops, and it checks that no process it
    saw outlives the run."""

    def __init__(self, durability: str | None = None) -> None:
        self.durability = durability
        self.raw: RawEcho | None = None
        self.node: Any = None
        self.node_dir = ""
        self.threads: ThreadsNode | None = None
        self.leftovers: list[dict[str, Any]] = []
        self.timings: dict[str, float] = {}
        self._names = 0
        self.beamish_agents = 0  # spawned on the node (all still running at shutdown)

    def start_raw(self) -> None:
        """Fork the raw echo server; call before anything makes a ZeroMQ context."""
        self.node_dir = tempfile.mkdtemp(prefix="bm-", dir="/tmp")
        self.raw = RawEcho("ipc://" + os.path.join(self.node_dir, "raw.sock"))
        self.raw.start()

    def start(self) -> None:
        """Start the beamish node and the threads node."""
        from beamish.runtime import start_node
        if not self.node_dir:
            self.node_dir = tempfile.mkdtemp(prefix="bm-", dir="/tmp")
        t0 = time.perf_counter()
        self.node = start_node(os.path.join(self.node_dir, "n"), durability=self.durability)
        self.timings["beamish_node_start_s"] = time.perf_counter() - t0
        self.threads = ThreadsNode()

    def name(self, prefix: str) -> str:
        self._names += 1
        return f"{prefix}-{self._names}"

    def close(self) -> None:
        """Stop everything; SIGKILL (and report) any process that outlived its shutdown."""
        watched: list[psutil.Process] = []
        try:
            if self.threads is not None:
                self.threads.shutdown()
        finally:
            try:
                if self.node is not None:
                    try:
                        daemon = psutil.Process(self.node.pid)
                        watched = [daemon, *daemon.children(recursive=True)]
                    except psutil.Error:
                        pass
                    self.timings["beamish_agents_at_shutdown"] = self.beamish_agents
                    t0 = time.perf_counter()
                    try:
                        self.node.shutdown()
                    finally:
                        self.timings["beamish_node_shutdown_s"] = time.perf_counter() - t0
            finally:
                if self.raw is not None:
                    self.raw.close()
                self._reap(watched)
                if self.node_dir:
                    shutil.rmtree(self.node_dir, ignore_errors=True)

    def _reap(self, watched: list[psutil.Process]) -> None:
        for proc in watched:
            try:
                if not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE:
                    continue
                self.leftovers.append({"pid": proc.pid, "cmdline": " ".join(proc.cmdline())})
                proc.kill()
            except psutil.Error:
                continue
        if self.leftovers:
            log(f"[teardown] WARNING: {len(self.leftovers)} process(es) outlived the node's "
                "shutdown and were killed")


def _caller(ref: Any) -> Callable[[Any], Any]:
    call = ref.call

    def fn(msg: Any) -> Any:
        return call(msg, CALL_TIMEOUT_S)
    return fn


def _raw_caller(raw: RawEcho, payload: bytes) -> Callable[[Any], Any]:
    round_trip = raw.round_trip

    def fn(msg: Any) -> Any:
        return round_trip(payload)
    return fn


# -- call round trip ----------------------------------------------------------------------------
def time_in_blocks(contenders: dict[str, Callable[[Any], Any]], sizes: Sizes,
                   share: dict[str, int] | None = None) -> dict[str, list[int]]:
    """Time single calls of each contender (ns), in ``sizes.call_blocks`` blocks whose order
    rotates, so that drift on a shared machine hits every contender alike. ``share``
    divides one contender's samples per block (a slow one, e.g. fsync)."""
    samples: dict[str, list[int]] = {key: [] for key in contenders}
    keys = list(contenders)
    per_block = max(1, sizes.call_samples // sizes.call_blocks)
    clock = time.perf_counter_ns
    for block in range(sizes.call_blocks):
        shift = block % len(keys)
        for key in keys[shift:] + keys[:shift]:
            fn, out = contenders[key], samples[key]
            n = per_block if share is None else max(10, per_block // share.get(key, 1))
            for i in range(n):
                msg = {"seq": i, "text": "ping"}
                t0 = clock()
                fn(msg)
                out.append(clock() - t0)
    return samples


def call_latency(h: Harness, sizes: Sizes) -> dict[str, Any]:
    """Round trip of one call to one idle agent: beamish, threads, raw pyzmq floor."""
    assert h.node is not None and h.threads is not None
    # The floor sends the message already packed: transport only, no codec, no Python
    # runtime on either side beyond pyzmq's send and recv.
    payload: bytes = msgpack.packb(MESSAGE)
    contenders: dict[str, Callable[[Any], Any]] = {}
    expected: dict[str, Any] = {}
    if h.raw is not None:
        h.raw.connect()
        contenders["raw_zmq"] = _raw_caller(h.raw, payload)
        expected["raw_zmq"] = payload
    b = h.node.spawn(agents.ECHO, name=h.name("echo"))
    t = h.threads.spawn(agents.ECHO, name=h.name("echo"))
    ba = h.node.spawn(agents.ASYNC_ECHO, name=h.name("aecho"))
    ta = h.threads.spawn(agents.ASYNC_ECHO, name=h.name("aecho"))
    h.beamish_agents += 2
    for key, ref in (("beamish", b), ("threads", t), ("beamish_async", ba),
                     ("threads_async", ta)):
        contenders[key] = _caller(ref)
        expected[key] = MESSAGE
    for key, fn in contenders.items():
        if fn(MESSAGE) != expected[key]:
            raise AssertionError(f"{key}: the echo did not echo")
    for fn in contenders.values():
        for _ in range(sizes.call_warmup):
            fn(MESSAGE)
    samples = time_in_blocks(contenders, sizes)
    result: dict[str, Any] = {"message_bytes": len(payload), "blocks": sizes.call_blocks}
    for key, ns in samples.items():
        result[key] = latency_summary(ns)
        s = result[key]
        log(f"[call] {key:14s} p50 {s['p50_us']:8.1f} µs  p99 {s['p99_us']:8.1f} µs  "
            f"(n={s['n']})")
    if "raw_zmq" in result:
        raw50 = result["raw_zmq"]["p50_us"]
        result["beamish_p50_over_raw"] = result["beamish"]["p50_us"] / raw50
        result["threads_p50_over_raw"] = result["threads"]["p50_us"] / raw50
    result["beamish_p50_over_threads"] = result["beamish"]["p50_us"] / result["threads"]["p50_us"]
    return result


# -- cast throughput ----------------------------------------------------------------------------
def _cast_round(cast: Callable[[str, Any], None], call: Callable[..., Any], names: list[str],
                messages: int) -> dict[str, Any]:
    """Cast ``messages`` round-robin to ``names``, then call each for its count; the
    time runs from the first cast until the last count is back."""
    before = [call(n, "count", CALL_TIMEOUT_S) for n in names]
    k = len(names)
    lat: list[int] = []
    clock = time.perf_counter_ns
    t0 = clock()
    for i in range(messages):
        msg = {"seq": i, "text": "ping"}
        c0 = clock()
        cast(names[i % k], msg)
        lat.append(clock() - c0)
    t_sent = clock()
    after = [call(n, "count", CALL_TIMEOUT_S) for n in names]
    t1 = clock()
    handled = sum(a - b for a, b in zip(after, before, strict=True))
    if handled != messages:
        raise AssertionError(f"{messages} casts sent, {handled} counted")
    return {"messages": messages, "seconds": (t1 - t0) / 1e9,
            "msgs_per_s": messages / ((t1 - t0) / 1e9),
            "send_msgs_per_s": messages / ((t_sent - t0) / 1e9),
            "cast_call": latency_summary(lat)}


def cast_throughput(h: Harness, sizes: Sizes) -> dict[str, Any]:
    """Casts per second to 1 agent and to many, from one sender thread."""
    assert h.node is not None and h.threads is not None
    out: dict[str, Any] = {}
    for k in sizes.cast_agents:
        runtimes: dict[str, tuple[Any, list[str], int]] = {}
        t0 = time.perf_counter()
        bnames = [h.node.spawn(agents.COUNTER, name=h.name("cnt")).name for _ in range(k)]
        h.beamish_agents += k
        tnames = [h.threads.spawn(agents.COUNTER, name=h.name("cnt")).name for _ in range(k)]
        log(f"[cast] {k} agent(s) spawned on each runtime in {time.perf_counter() - t0:.2f} s")
        runtimes["beamish"] = (h.node, bnames, sizes.cast_messages)
        runtimes["threads"] = (h.threads, tnames, sizes.cast_messages_threads)
        for rt, names, _ in runtimes.values():
            _cast_round(rt.cast, rt.call, names, max(sizes.cast_warmup, k))
        rounds: dict[str, list[dict[str, Any]]] = {key: [] for key in runtimes}
        keys = list(runtimes)
        for rep in range(sizes.cast_repeats):
            shift = rep % len(keys)
            for key in keys[shift:] + keys[:shift]:
                rt, names, n = runtimes[key]
                rounds[key].append(_cast_round(rt.cast, rt.call, names, n))
        entry: dict[str, Any] = {}
        for key, rs in rounds.items():
            rates = [r["msgs_per_s"] for r in rs]
            all_lat = {"p50_us": median([r["cast_call"]["p50_us"] for r in rs]),
                       "p99_us": median([r["cast_call"]["p99_us"] for r in rs])}
            entry[key] = {"agents": k, "messages_per_repeat": rs[0]["messages"],
                          "repeats": len(rs), "msgs_per_s": median(rates),
                          "msgs_per_s_min": min(rates), "msgs_per_s_max": max(rates),
                          "send_msgs_per_s": median([r["send_msgs_per_s"] for r in rs]),
                          "cast_call": all_lat, "rounds": rs}
            log(f"[cast] {k:3d} agent(s) {key:8s} {median(rates):10,.0f} msgs/s "
                f"(min {min(rates):,.0f}, max {max(rates):,.0f}); cast() p50 "
                f"{all_lat['p50_us']:.1f} µs p99 {all_lat['p99_us']:.1f} µs")
        entry["beamish_over_threads"] = entry["beamish"]["msgs_per_s"] / \
            entry["threads"]["msgs_per_s"]
        out[f"agents_{k}"] = entry
    return out


# -- spawn and memory -------------------------------------------------------------------------
def _memory(pids: list[int]) -> dict[str, Any]:
    uss, rss, pss = [], [], []
    for pid in pids:
        info = psutil.Process(pid).memory_full_info()
        uss.append(info.uss)
        rss.append(info.rss)
        if hasattr(info, "pss"):
            pss.append(info.pss)
    res: dict[str, Any] = {"agents": len(pids),
                           "uss_bytes_median": median(uss), "uss_bytes_mean": sum(uss) / len(uss),
                           "rss_bytes_median": median(rss), "rss_bytes_mean": sum(rss) / len(rss)}
    if pss:
        res["pss_bytes_median"] = median(pss)
        res["pss_bytes_mean"] = sum(pss) / len(pss)
    return res


def _self_memory() -> tuple[int, int]:
    info = psutil.Process().memory_full_info()
    return info.uss, info.rss


SPAWN_TARGET_AGENTS = 1000
SPAWN_TARGET_S = 4.0  # target: 1,000 eager agents spawned and answering
# Client threads spawning (then calling) at once: independent spawns do not wait for each
# other, and a service spawning sessions does it from many requests at a time.
SPAWN_CLIENTS = 4


def spawn_and_memory(h: Harness, sizes: Sizes) -> dict[str, Any]:
    """Spawn N agents and get one reply from each; memory per idle agent. With
    `SPAWN_TARGET_AGENTS` agents, the figure is checked against `SPAWN_TARGET_S`."""
    return {f"agents_{n}": _spawn_n(h, n) for n in sizes.spawn_agents}


def _spawn_growth(spawn_ns: list[int]) -> dict[str, Any]:
    """One spawn's latency among the first and the last tenth of the spawns (with few
    agents alive, and with nearly all of them): a cost that grows with the number of live
    agents shows as a later tenth slower than the first."""
    tenth = max(1, len(spawn_ns) // 10)
    return {"first_tenth": latency_summary(spawn_ns[:tenth]),
            "last_tenth": latency_summary(spawn_ns[-tenth:])}


def _spawn_n(h: Harness, n: int) -> dict[str, Any]:
    assert h.node is not None and h.threads is not None
    out: dict[str, Any] = {"agents": n}

    def run(rt: Any) -> tuple[dict[str, Any], list[int]]:
        clock = time.perf_counter_ns

        def spawn_one(name: str) -> tuple[Any, int]:
            s0 = clock()
            ref = rt.spawn(agents.COUNTER, name=name)
            return ref, clock() - s0

        names = [h.name("sp") for _ in range(n)]
        with ThreadPoolExecutor(SPAWN_CLIENTS, thread_name_prefix="bench-spawn") as pool:
            t0 = clock()
            spawned = list(pool.map(spawn_one, names))
            t_spawned = clock()
            pids = list(pool.map(lambda ref: ref.call("pid", CALL_TIMEOUT_S),
                                 [ref for ref, _ in spawned]))
            t1 = clock()
        spawn_ns = [ns for _, ns in spawned]  # in the order the spawns were asked for
        total = (t1 - t0) / 1e9
        return {"seconds": total, "agents_per_s": n / total, "clients": SPAWN_CLIENTS,
                "spawn_seconds": (t_spawned - t0) / 1e9,
                "spawn": latency_summary(spawn_ns), **_spawn_growth(spawn_ns),
                "names": [ref.name for ref, _ in spawned]}, pids

    uss0, rss0 = _self_memory()
    out["threads"], _ = run(h.threads)
    uss1, rss1 = _self_memory()
    out["threads"]["memory"] = {
        "how": "growth of this process's USS/RSS while the agent threads were spawned, / N",
        "uss_bytes_per_agent": (uss1 - uss0) / n, "rss_bytes_per_agent": (rss1 - rss0) / n}
    log(f"[spawn] threads: {n} agents + 1 reply each in {out['threads']['seconds']:.3f} s "
        f"({out['threads']['agents_per_s']:,.0f}/s)")

    out["beamish"], bpids = run(h.node)
    h.beamish_agents += n
    if len(set(bpids)) != n or os.getpid() in bpids or h.node.pid in bpids:
        raise AssertionError(f"expected {n} distinct agent processes, got pids {bpids}")
    log(f"[spawn] beamish: {n} agents + 1 reply each in {out['beamish']['seconds']:.3f} s "
        f"({out['beamish']['agents_per_s']:,.1f}/s); spawn p50 "
        f"{out['beamish']['spawn']['p50_us'] / 1000:.1f} ms p99 "
        f"{out['beamish']['spawn']['p99_us'] / 1000:.1f} ms")
    first, last = out["beamish"]["first_tenth"], out["beamish"]["last_tenth"]
    log(f"[spawn] beamish: one spawn among the first tenth p50 {first['p50_us'] / 1000:.1f} "
        f"ms p99 {first['p99_us'] / 1000:.1f} ms; among the last tenth p50 "
        f"{last['p50_us'] / 1000:.1f} ms p99 {last['p99_us'] / 1000:.1f} ms")
    if n == SPAWN_TARGET_AGENTS:
        seconds = out["beamish"]["seconds"]
        out["target"] = {"what": f"{n:,} eager agents spawned and answering a call in at "
                                 f"most {SPAWN_TARGET_S:g} s ({SPAWN_CLIENTS} client threads)",
                         "target_s": SPAWN_TARGET_S, "figure": seconds,
                         "met": seconds <= SPAWN_TARGET_S}
        log(f"[spawn] target: {n:,} eager agents spawned and answering in <= "
            f"{SPAWN_TARGET_S:g} s: {'met' if out['target']['met'] else 'MISSED'} "
            f"({seconds:.2f} s)")
    mem = _memory(bpids)
    mem["how"] = "psutil memory_full_info() of each agent process (pids from a call)"
    try:
        daemon = psutil.Process(h.node.pid)
        fixed = [daemon, *daemon.children(recursive=False)]
        agents_set = set(bpids)
        mem["node_overhead_uss_bytes"] = sum(
            p.memory_full_info().uss for p in fixed if p.pid not in agents_set)
    except psutil.Error:
        pass
    out["beamish"]["memory"] = mem
    log(f"[spawn] beamish idle agent: USS {mem['uss_bytes_median'] / 2**20:.2f} MiB, "
        f"RSS {mem['rss_bytes_median'] / 2**20:.2f} MiB (medians of {n})")
    out["beamish"]["kernel_threads_cpu"] = _kernel_threads_cpu(3.0)
    out["beamish_over_threads_seconds"] = out["beamish"]["seconds"] / out["threads"]["seconds"]
    # The later scenarios start from a small node again, as they would alone (1,000 idle
    # processes cost CPU on some kernels: see kernel_threads_cpu).
    t0 = time.perf_counter()
    for name in out["beamish"].pop("names"):
        h.node.delete(name)
    for name in out["threads"].pop("names"):
        h.threads.stop(name)
    h.beamish_agents -= n
    out["cleanup_seconds"] = time.perf_counter() - t0
    log(f"[spawn] deleted the {n} agents in {out['cleanup_seconds']:.1f} s")
    return out


def _kernel_threads_cpu(seconds: float) -> dict[str, float]:
    snap = kernel_threads_snapshot()
    time.sleep(seconds)
    out = kernel_threads_cpu(snap)
    if out:
        log(f"[spawn] kernel threads busy while the agents idle: {describe(out)} of a core")
    return out


SCENARIOS: dict[str, Callable[[Harness, Sizes], dict[str, Any]]] = {
    "call": call_latency,
    "cast": cast_throughput,
    "spawn": spawn_and_memory,
    "noisy": _isolation.noisy_neighbour,
    "cpu": _isolation.cpu_bound,
    "faults": _isolation.fault_matrix,
    "kill9": _isolation.kill9,
}
