"""The ``peers`` scenario (``--peers``): the same rows on other actor runtimes.

Rows, measured alike on every system with one client thread:

    call          p50/p99 of a call to one idle actor that echoes the message
    cast          casts to one counting actor, from the first cast until it answered a
                  call with its count (msgs/s)
    spawn         100 actors started, then one call each answered (seconds)
    memory        USS per idle actor: each actor process's own (median); for threads,
                  the growth of the process's USS while they were started, / N
    kill          SIGKILL an actor's process that has counted k casts, then call it for
                  its count: time from the kill until it answers again (median of the
                  trials), and whether the answer is k (its state kept)

beamish and the plain-threads runtime run in this process (the harness's node); each
peer runs in a subprocess of its own session (`._peers_child`), started and torn down
once, so that nothing of one system is alive while another is measured, and whatever
outlives it is found and SIGKILLed (and reported). Every system's calls alternate in
blocks with raw ZeroMQ DEALER↔ROUTER round trips to the same forked echo server
(`._raw.RawEcho`, the harness's), from the measuring process: that in-run reference is
what the call and cast rows are divided by.

Peers: Thespian (``multiprocTCPBase``: an actor is a process; an actor that outlives its
process has to be re-created by its parent, which is what the kill row's Thespian side
does: a keeper actor re-creates its Counter on ``ChildActorExited``), Pykka (threads: no
actor can be SIGKILLed alone, so its kill row is "n/a (threads)"), and Ray (an actor is a
worker process, restarted by Ray with ``max_restarts=-1``) when it is importable. Thespian
and Pykka install with the ``beamish[peers]`` extra.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import msgpack
import psutil

from . import agents
from ._stats import latency_summary, median

CALL_TIMEOUT_S = 30.0
KILL_CASTS = 20  # casts a Counter has counted when it is SIGKILLed
PEERS = ("thespian", "pykka", "ray")
LABELS = {"beamish": "beamish", "threads": "threads", "thespian": "Thespian",
          "pykka": "Pykka", "ray": "Ray"}
PEER_TIMEOUT_S = 600.0  # a peer's whole subprocess


@dataclass(frozen=True, slots=True)
class PeerSizes:
    """How much work each row does (the same on every system)."""

    call_warmup: int
    call_samples: int
    call_blocks: int
    cast_messages: int
    cast_repeats: int
    spawn_actors: int
    kill_trials: int


QUICK = PeerSizes(call_warmup=200, call_samples=2000, call_blocks=4, cast_messages=2000,
                  cast_repeats=3, spawn_actors=100, kill_trials=3)
FULL = PeerSizes(call_warmup=1000, call_samples=10000, call_blocks=10, cast_messages=10000,
                 cast_repeats=5, spawn_actors=100, kill_trials=5)


def peer_sizes(sizes: Any) -> PeerSizes:
    """The peers' sizes for a run of ``sizes`` (quick when its call samples are few);
    ``sizes.peer_sizes`` when it has one (the tests' tiny run)."""
    given = getattr(sizes, "peer_sizes", None)
    if isinstance(given, PeerSizes):
        return given
    return QUICK if getattr(sizes, "call_samples", 0) < 10_000 else FULL


class System(Protocol):
    """One actor runtime under test, as the rows drive it. A handle is whatever names
    one of its actors (a beamish agent's name, a Thespian address, a Pykka ref...)."""

    def spawn(self, kind: str) -> Any:
        """Start an actor: ``"echo"`` (a call answers its message), ``"counter"`` (a
        cast ``"incr"`` counts; the call ``"count"`` answers the count, ``"pid"`` the
        actor's process id; any other call answers its message) or ``"kept"`` (a counter
        under whatever the runtime offers to bring it back after its process died)."""

    def call(self, handle: Any, msg: Any) -> Any:
        """Send ``msg`` and wait for the reply."""

    def cast(self, handle: Any, msg: Any) -> None:
        """Send ``msg``, no reply."""

    def delete(self, handle: Any) -> None:
        """Stop the actor for good."""

    def memory_per_actor(self, handles: Sequence[Any], before_uss: int) -> dict[str, Any]:
        """USS per idle actor of ``handles`` (``before_uss``: this process's USS before
        they were started, for a runtime whose actors share it)."""

    def kill_and_recall(self, handle: Any) -> tuple[int, Any]:
        """SIGKILL the actor's process, then call it for its ``"count"`` until it answers;
        return the nanoseconds from the kill to the answer, and the answer. Raises
        NotImplementedError when an actor has no process of its own."""


# -- the rows, on any System ------------------------------------------------------------------
def _raw_fn(endpoint: str) -> tuple[Callable[[Any], Any], Callable[[], None]]:
    """A raw DEALER round trip to the echo server at ``endpoint`` (a socket of its own,
    in this process), and how to close it."""
    import zmq
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    payload: bytes = msgpack.packb({"seq": 0, "text": "ping"})
    send, recv = sock.send, sock.recv

    def fn(msg: Any) -> Any:
        send(payload)
        return recv()

    def close() -> None:
        sock.close(0)
        ctx.term()
    return fn, close


def call_row(system: System, endpoint: str, sz: PeerSizes) -> dict[str, Any]:
    """Call p50/p99 of ``system``'s echo actor and of the raw round trip to ``endpoint``,
    in blocks whose order alternates."""
    echo = system.spawn("echo")
    raw, close = _raw_fn(endpoint)
    try:
        msg = {"seq": 0, "text": "ping"}
        if system.call(echo, msg) != msg:
            raise AssertionError("the echo did not echo")
        fns: dict[str, Callable[[Any], Any]] = {"raw": raw,
                                                 "call": lambda m: system.call(echo, m)}
        for fn in fns.values():
            for _ in range(sz.call_warmup):
                fn(msg)
        samples: dict[str, list[int]] = {"raw": [], "call": []}
        per = max(1, sz.call_samples // sz.call_blocks)
        clock = time.perf_counter_ns
        for block in range(sz.call_blocks):
            for key in (("raw", "call") if block % 2 == 0 else ("call", "raw")):
                fn, out = fns[key], samples[key]
                for i in range(per):
                    m = {"seq": i, "text": "ping"}
                    t0 = clock()
                    fn(m)
                    out.append(clock() - t0)
    finally:
        close()
        system.delete(echo)
    return {"call": latency_summary(samples["call"]), "raw": latency_summary(samples["raw"])}


def cast_row(system: System, sz: PeerSizes) -> dict[str, Any]:
    """Casts per second to one Counter until it answered with its count (median of the
    repeats)."""
    counter = system.spawn("counter")
    try:
        system.cast(counter, "incr")
        count = system.call(counter, "count")
        rates: list[float] = []
        for _ in range(sz.cast_repeats):
            t0 = time.perf_counter_ns()
            for _ in range(sz.cast_messages):
                system.cast(counter, "incr")
            got = system.call(counter, "count")
            seconds = (time.perf_counter_ns() - t0) / 1e9
            if got != count + sz.cast_messages:
                raise AssertionError(f"{sz.cast_messages} casts sent, "
                                     f"{got - count} counted")
            count = got
            rates.append(sz.cast_messages / seconds)
    finally:
        system.delete(counter)
    return {"messages_per_repeat": sz.cast_messages, "repeats": sz.cast_repeats,
            "msgs_per_s": median(rates), "rounds_msgs_per_s": rates}


def spawn_row(system: System, sz: PeerSizes, self_uss: Callable[[], int]) -> dict[str, Any]:
    """Start ``spawn_actors`` Counters, then one call each; the USS per idle actor."""
    n = sz.spawn_actors
    before = self_uss()
    t0 = time.perf_counter_ns()
    handles = [system.spawn("counter") for _ in range(n)]
    t_spawned = time.perf_counter_ns()
    pids = [system.call(h, "pid") for h in handles]
    t1 = time.perf_counter_ns()
    try:
        memory = system.memory_per_actor(handles, before)
    finally:
        for h in handles:
            system.delete(h)
    return {"actors": n, "seconds": (t1 - t0) / 1e9, "spawn_seconds": (t_spawned - t0) / 1e9,
            "distinct_pids": len(set(pids)), "memory": memory}


def kill_row(system: System, sz: PeerSizes) -> dict[str, Any]:
    """Per trial a fresh Counter with `KILL_CASTS` casts counted is SIGKILLed and called
    for its count: the time until it answers, and whether the count survived."""
    ms: list[float] = []
    kept: list[bool] = []
    answers: list[Any] = []
    for _ in range(sz.kill_trials):
        counter = system.spawn("kept")
        try:
            for _ in range(KILL_CASTS):
                system.cast(counter, "incr")
            if system.call(counter, "count") != KILL_CASTS:
                raise AssertionError("the counter lost casts before the kill")
            time.sleep(0.02)  # the system is idle when the kill lands
            ns, answer = system.kill_and_recall(counter)
        finally:
            system.delete(counter)
        ms.append(ns / 1e6)
        answers.append(answer)
        kept.append(answer == KILL_CASTS)
    return {"trials": sz.kill_trials, "casts_before": KILL_CASTS, "back_ms": median(ms),
            "trials_ms": ms, "answers": answers, "state_kept": all(kept),
            "state_kept_count": sum(kept)}


def measure(system: System, endpoint: str, sz: PeerSizes, self_uss: Callable[[], int],
            log: Callable[[str], None], label: str) -> dict[str, Any]:
    """Every row on ``system``."""
    out: dict[str, Any] = {}
    out.update(call_row(system, endpoint, sz))
    log(f"[peers] {label}: call p50 {out['call']['p50_us']:.0f} µs p99 "
        f"{out['call']['p99_us']:.0f} µs (raw p50 {out['raw']['p50_us']:.0f} µs)")
    out["cast"] = cast_row(system, sz)
    log(f"[peers] {label}: cast {out['cast']['msgs_per_s']:,.0f} msgs/s")
    out["spawn"] = spawn_row(system, sz, self_uss)
    log(f"[peers] {label}: spawn {sz.spawn_actors} + 1 reply each "
        f"{out['spawn']['seconds']:.3f} s; USS "
        f"{out['spawn']['memory']['uss_bytes_per_actor'] / 2**20:.2f} MiB per actor")
    try:
        out["kill"] = kill_row(system, sz)
    except NotImplementedError as exc:
        out["kill"] = {"na": str(exc)}
        log(f"[peers] {label}: SIGKILL n/a ({exc})")
    else:
        log(f"[peers] {label}: SIGKILL -> answering again {out['kill']['back_ms']:.1f} ms, "
            f"state kept {out['kill']['state_kept_count']}/{out['kill']['trials']}")
    return out


def self_uss() -> int:
    """This process's USS, bytes."""
    return int(psutil.Process().memory_full_info().uss)


def uss_median(pids: Sequence[int]) -> dict[str, Any]:
    """The median USS of processes ``pids`` (one actor each)."""
    uss = [psutil.Process(p).memory_full_info().uss for p in pids]
    return {"uss_bytes_per_actor": median(uss), "how": "median USS of the actor processes"}


def uss_growth(before: int, n: int) -> dict[str, Any]:
    """USS per actor for actors that live in this process: its growth since ``before``."""
    return {"uss_bytes_per_actor": (self_uss() - before) / n,
            "how": "growth of the process's USS while the actors were started, / N"}


# -- beamish and threads, in the harness -----------------------------------------------------
class BeamishSystem:
    """The harness's beamish node: agents under a supervisor of their own (the root's
    default intensity would give up after three kills in a row)."""

    SUPERVISOR = "peers-sup"

    def __init__(self, h: Any) -> None:
        self.h, self.node = h, h.node
        self.node.add_supervisor(self.SUPERVISOR, max_restarts=1000, max_seconds=5.0)

    def spawn(self, kind: str) -> Any:
        cls = agents.ECHO if kind == "echo" else agents.COUNTER
        self.h.beamish_agents += 1
        return self.node.spawn(cls, name=self.h.name("peer"), supervisor=self.SUPERVISOR).name

    def call(self, handle: Any, msg: Any) -> Any:
        return self.node.call(handle, msg, CALL_TIMEOUT_S)

    def cast(self, handle: Any, msg: Any) -> None:
        self.node.cast(handle, msg)

    def delete(self, handle: Any) -> None:
        self.node.delete(handle)
        self.h.beamish_agents -= 1

    def memory_per_actor(self, handles: Sequence[Any], before_uss: int) -> dict[str, Any]:
        return uss_median([self.call(h, "pid") for h in handles])

    def kill_and_recall(self, handle: Any) -> tuple[int, Any]:
        pid = self.call(handle, "pid")
        t0 = time.perf_counter_ns()
        os.kill(pid, signal.SIGKILL)
        answer = self.call(handle, "count")  # waits in the durable mailbox
        return time.perf_counter_ns() - t0, answer


class ThreadsSystem:
    """The harness's plain-threads runtime (one thread per agent, this process)."""

    def __init__(self, h: Any) -> None:
        self.h, self.rt = h, h.threads

    def spawn(self, kind: str) -> Any:
        cls = agents.ECHO if kind == "echo" else agents.COUNTER
        return self.rt.spawn(cls, name=self.h.name("peer")).name

    def call(self, handle: Any, msg: Any) -> Any:
        return self.rt.call(handle, msg, CALL_TIMEOUT_S)

    def cast(self, handle: Any, msg: Any) -> None:
        self.rt.cast(handle, msg)

    def delete(self, handle: Any) -> None:
        self.rt.stop(handle)

    def memory_per_actor(self, handles: Sequence[Any], before_uss: int) -> dict[str, Any]:
        return uss_growth(before_uss, len(handles))

    def kill_and_recall(self, handle: Any) -> tuple[int, Any]:
        raise NotImplementedError("threads")


# -- the scenario -----------------------------------------------------------------------------
def _log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def installed(peer: str) -> bool:
    """Whether ``peer``'s package can be imported here."""
    return importlib.util.find_spec(peer) is not None


def _group_leftovers(pgid: int) -> list[dict[str, Any]]:
    """SIGKILL every process still in process group ``pgid``; describe them."""
    found: list[dict[str, Any]] = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            if proc.pid == os.getpid() or os.getpgid(proc.pid) != pgid:
                continue
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
            found.append({"pid": proc.pid, "cmdline": " ".join(proc.info["cmdline"] or [])})
            proc.kill()
        except (psutil.Error, ProcessLookupError):
            continue
    return found


def run_peer(peer: str, endpoint: str, sz: PeerSizes) -> dict[str, Any]:
    """Measure ``peer`` in a subprocess of its own session; afterwards SIGKILL (and list)
    anything left in that session's process group."""
    if not installed(peer):
        return {"available": False, "why": "not installed"}
    fd, path = tempfile.mkstemp(prefix=f"bm-peer-{peer}-", suffix=".json", dir="/tmp")
    os.close(fd)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p or os.getcwd() for p in sys.path)
    cmd = [sys.executable, "-m", f"{__package__}._peers_child", peer, endpoint,
           json.dumps(asdict(sz)), path]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            env=env, start_new_session=True)
    try:
        rc = proc.wait(PEER_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        rc = proc.wait()
    finally:
        leftovers = _group_leftovers(proc.pid)
    try:
        with open(path) as fh:
            text = fh.read()
    finally:
        os.unlink(path)
    result: dict[str, Any] = json.loads(text) if text else {
        "available": True, "error": f"the {peer} subprocess exited {rc} without figures"}
    result["subprocess_seconds"] = time.perf_counter() - t0
    result["returncode"] = rc
    result["leftover_processes"] = leftovers
    if leftovers:
        _log(f"[peers] WARNING: {len(leftovers)} {peer} process(es) outlived its teardown "
             "and were killed")
    return result


def peers(h: Any, sizes: Any) -> dict[str, Any]:
    """beamish and threads here, then each peer in its own subprocess, against the
    harness's raw echo server."""
    assert h.node is not None and h.threads is not None
    if h.raw is None:
        raise RuntimeError("the peers scenario needs the raw echo server (Harness.start_raw)")
    sz = peer_sizes(sizes)
    systems: dict[str, Any] = {}
    for key, system in (("beamish", BeamishSystem(h)), ("threads", ThreadsSystem(h))):
        figures = measure(system, h.raw.endpoint, sz, self_uss, _log, key)
        systems[key] = {"available": True, "isolation": "process" if key == "beamish"
                        else "threads", **figures}
    for peer in PEERS:
        _log(f"[peers] {LABELS[peer]}: start")
        systems[peer] = run_peer(peer, h.raw.endpoint, sz)
        if not systems[peer].get("available"):
            _log(f"[peers] {LABELS[peer]}: {systems[peer]['why']}")
        elif "error" in systems[peer]:
            _log(f"[peers] {LABELS[peer]} FAILED: {systems[peer]['error']}")
    out: dict[str, Any] = {"sizes": asdict(sz), "systems": systems}
    out["comparison"] = compare(systems)
    out["target"] = ahead_target(out["comparison"])
    _log(f"[peers] beamish ahead of every process-based peer on every row: "
         f"{'met' if out['target']['met'] else 'MISSED'}")
    return out


# -- the comparison (pure) --------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Row:
    """One row of the peers table: how to read its figure from a system's figures, and
    which way is better."""

    key: str
    label: str
    unit: str
    lower_is_better: bool


ROWS = (
    Row("call_p50", "call round trip", "p50 µs", True),
    Row("call_p99", "call round trip", "p99 µs", True),
    Row("cast", "cast to 1 actor, until handled", "msgs/s", False),
    Row("spawn", "spawn 100 + 1 reply each", "seconds", True),
    Row("memory", "idle actor", "USS MiB", True),
    Row("kill", "SIGKILL → answering again", "ms (median)", True),
    Row("kept", "state kept after SIGKILL", "trials", False),
)


def figure(row: str, figures: dict[str, Any]) -> float | str | None:
    """A system's figure for ``row``: a number, ``"n/a (why)"``, or None (not measured)."""
    if not figures.get("available") or "error" in figures:
        return None
    if row == "call_p50":
        return float(figures["call"]["p50_us"])
    if row == "call_p99":
        return float(figures["call"]["p99_us"])
    if row == "cast":
        return float(figures["cast"]["msgs_per_s"])
    if row == "spawn":
        return float(figures["spawn"]["seconds"])
    if row == "memory":
        return float(figures["spawn"]["memory"]["uss_bytes_per_actor"]) / 2**20
    kill = figures.get("kill", {})
    if "na" in kill:
        return f"n/a ({kill['na']})"
    if row == "kill":
        return float(kill["back_ms"])
    if row == "kept":
        return float(kill["state_kept_count"]) / kill["trials"]
    raise ValueError(f"unknown row {row!r}")


def reference_ratio(row: str, figures: dict[str, Any]) -> float | None:
    """The row's figure over the system's in-run raw round trip (call: p50 over raw p50,
    p99 over raw p99; cast: the time per message over raw p50); None for the other rows."""
    if not figures.get("available") or "error" in figures:
        return None
    raw = figures["raw"]
    if row == "call_p50":
        return float(figures["call"]["p50_us"]) / float(raw["p50_us"])
    if row == "call_p99":
        return float(figures["call"]["p99_us"]) / float(raw["p99_us"])
    if row == "cast":
        return 1e6 / float(figures["cast"]["msgs_per_s"]) / float(raw["p50_us"])
    return None


def verdict(row: Row, ours: float | str | None, theirs: float | str | None) -> str | None:
    """``"leads"``, ``"trails"`` or ``"ties"`` for beamish's figure against a peer's; None
    when either was not measured or is not a number (a peer's n/a is no contest)."""
    if not isinstance(ours, float) or not isinstance(theirs, float):
        return None
    if ours == theirs:
        return "ties"
    better = ours < theirs if row.lower_is_better else ours > theirs
    return "leads" if better else "trails"


def compare(systems: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """For each row, beamish against each process-based peer that was measured:
    ``{row: {peer: {"verdict": ..., "factor": how many times better or worse}}}``."""
    out: dict[str, dict[str, Any]] = {}
    ours = systems.get("beamish", {})
    for row in ROWS:
        ent: dict[str, Any] = {}
        for peer in PEERS:
            theirs = systems.get(peer, {})
            if theirs.get("isolation") != "process":
                continue
            a, b = figure(row.key, ours), figure(row.key, theirs)
            v = verdict(row, a, b)
            if v is None:
                continue
            assert isinstance(a, float) and isinstance(b, float)
            factor = None
            if a and b:
                factor = b / a if row.lower_is_better else a / b
            ent[peer] = {"verdict": v, "factor": factor}
        out[row.key] = ent
    return out


def ahead_target(comparison: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The target "beamish ahead of every process-based peer on every row": met when it
    leads (or ties on state kept) everywhere a peer was measured."""
    behind = [f"{row} vs {LABELS[peer]}" for row, ent in comparison.items()
              for peer, v in ent.items() if v["verdict"] == "trails"
              or (v["verdict"] == "ties" and row != "kept")]
    peers_seen = sorted({p for ent in comparison.values() for p in ent})
    return {"what": "beamish ahead of every process-based peer on every row",
            "peers": peers_seen, "behind": behind, "met": bool(peers_seen) and not behind}


# -- the report -------------------------------------------------------------------------------
def _cell(row: Row, figures: dict[str, Any]) -> str:
    if not figures.get("available"):
        return figures.get("why", "—")
    if "error" in figures:
        return "failed"
    value = figure(row.key, figures)
    if value is None:
        return "—"
    if isinstance(value, str):
        return value
    if row.key == "kept":
        kill = figures["kill"]
        return f"{'yes' if kill['state_kept'] else 'no'} ({kill['state_kept_count']}/" \
               f"{kill['trials']})"
    text = f"{value:,.0f}" if value >= 1000 else (
        f"{value:.3f}" if row.key == "spawn" else f"{value:.2f}" if value < 10
        else f"{value:.1f}")
    ratio = reference_ratio(row.key, figures)
    return f"{text} ({ratio:.2f}×)" if ratio is not None else text


def _against(comparison: dict[str, Any], row: str) -> str:
    parts = []
    for peer, v in comparison.get(row, {}).items():
        factor = f" ({v['factor']:.2f}×)" if v["factor"] and v["verdict"] != "ties" else ""
        parts.append(f"{v['verdict']} {LABELS[peer]}{factor}")
    return "; ".join(parts) or "—"


def table_lines(entry: Any) -> list[str]:
    """The report's peers section (nothing when the scenario did not run or failed)."""
    if not isinstance(entry, dict) or "systems" not in entry:
        return []
    systems, comparison = entry["systems"], entry["comparison"]
    keys = ["beamish", "threads", *PEERS]
    head = " | ".join(LABELS[k] for k in keys)
    lines = ["", "## Peers: the same rows on other actor runtimes (this run)", "",
             f"| row | figure | {head} | beamish against the process-based peers |",
             "| --- | --- |" + " ---: |" * len(keys) + " --- |"]
    for row in ROWS:
        cells = " | ".join(_cell(row, systems.get(k, {})) for k in keys)
        lines.append(f"| {row.label} | {row.unit} | {cells} | {_against(comparison, row.key)} |")
    raws = " | ".join(f"{systems[k]['raw']['p50_us']:.1f}" if systems.get(k, {}).get("raw")
                      else "—" for k in keys)
    lines.append(f"| raw ZeroMQ DEALER↔ROUTER (the in-run reference) | p50 µs | {raws} | |")
    sz = entry["sizes"]
    iso = ", ".join(f"{LABELS[k]} {systems[k]['isolation']}" for k in keys
                    if systems.get(k, {}).get("isolation"))
    lines += ["", f"(×): the figure over the same system's raw ZeroMQ round trip, measured "
              f"from the same process to the same forked echo server in blocks alternating "
              f"with its calls (call p50 over raw p50, p99 over raw p99; cast: the time per "
              f"message over raw p50). One client thread everywhere: {sz['call_samples']:,} "
              f"calls per system in {sz['call_blocks']} blocks after {sz['call_warmup']} "
              f"warm-up; casts: median of {sz['cast_repeats']} repeats of "
              f"{sz['cast_messages']:,} to one Counter, until it answered a call with its "
              f"count; spawn: {sz['spawn_actors']} Counters started one after another, then "
              f"one call each; USS: median of each actor process's own, or for actors that "
              f"are threads, the growth of their process's USS / N; SIGKILL: {sz['kill_trials']}"
              f" trials, each a fresh Counter with {KILL_CASTS} casts counted whose process is "
              f"SIGKILLed, then called for its count until it answers (Thespian: its parent "
              f"actor re-creates it on ChildActorExited and the client asks the parent for "
              f"the new address; Ray: max_restarts=-1, max_task_retries=-1). Each peer runs "
              f"in a subprocess of its own, torn down before the next. Isolation: {iso}. "
              "beamish is durable (every cast and call committed to LMDB); no peer is."]
    versions = ", ".join(f"{LABELS[k]} {systems[k]['version']}" for k in PEERS
                         if systems.get(k, {}).get("version"))
    if versions:
        lines.append(f"Versions: {versions}.")
    for k in PEERS:
        s = systems.get(k, {})
        if s.get("error"):
            lines.append(f"**{LABELS[k]} failed:** {s['error']}")
        if s.get("leftover_processes"):
            lines.append(f"**{len(s['leftover_processes'])} {LABELS[k]} process(es) outlived "
                         "its teardown and were killed.**")
    return lines


def target_rows(entry: Any) -> list[str]:
    """The scenario's row of the targets table."""
    if not isinstance(entry, dict) or "target" not in entry:
        return []
    t = entry["target"]
    if not t["peers"]:
        return [f"| {t['what']} | no process-based peer was measured | not measured |"]
    figure_text = ("leads on every row" if not t["behind"]
                   else "behind or level on: " + ", ".join(t["behind"]))
    peers_text = ", ".join(LABELS[p] for p in t["peers"])
    return [f"| {t['what']} ({peers_text}) | {figure_text} | "
            f"{'**met**' if t['met'] else '**missed**'} |"]
