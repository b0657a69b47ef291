"""The ``sessions`` scenario: many registered sessions, few active at a time.

beamish: N sessions are spawned lazily (``lazy=True``, ``idle_timeout=``) under one
supervisor on a node of their own started with ``[node] max_awake``; then, for the
workload's length, a fixed number of them are active at a time: each active session gets
``calls_per_session`` calls, one every ``think_s`` seconds, then falls idle (another
session takes its slot) and sleeps through its ``idle_timeout`` or ``max_awake``. Client
threads drive the slots; a slot that falls behind its schedule calls at once.

The threads side does the same job as plain Python would: a pool of worker threads and
each session's state in a dict (a session is pinned to one worker, so its calls stay in
order; its ``init`` runs on its first call, as a lazy spawn's does). Not a thread per
session: 100,000 threads cost a stack and a kernel task each and buy nothing while their
users are idle, and `.threads_runtime` (a thread per agent, under a supervisor) is
measured against eager spawns by the ``spawn`` scenario already.

Measured: registration time and rate, the call latency of a call that wakes a session
(beamish: its process was started for it; split into a session's first activation, where
``init`` runs, and a wake from sleep), of a call to an awake session, the agents awake
over time (``node.status().awake``, sampled; the ``slept`` events by reason), the node's
RSS, and the USS of the node and every agent process (psutil). The two runtimes run in
turn (threads first), not interleaved: a minute-long workload cannot alternate in blocks.
"""

from __future__ import annotations

import collections
import dataclasses
import glob
import heapq
import itertools
import os
import queue
import random
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from beamish.runtime import Agent
from beamish.runtime.errors import BeamishError, CallTimeout

from ._stats import latency_summary

CALL_TIMEOUT_S = 30.0
SUPERVISOR = "sessions"

# the sessions targets
REGISTER_TARGET_SESSIONS = 100_000
REGISTER_TARGET_S = 10.0
NODE_RSS_TARGET_BYTES = 500 * 10**6
WAKE_P50_TARGET_MS = 20.0
WAKE_P99_TARGET_MS = 50.0


class Session(Agent):
    """One user's session: counts the calls it answered. A call answers ``{"n": calls so
    far, "fresh": whether this call is the first its process handled}``: a fresh reply
    means the call started the process (it woke the session)."""

    def init(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"n": 0}

    def handle_call(self, msg: Any, state: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        handled = getattr(self, "_handled", 0) + 1
        self._handled = handled
        state["n"] += 1
        return {"n": state["n"], "fresh": handled == 1}, state


SESSION = f"{__name__}:Session"


@dataclass(frozen=True, slots=True)
class SessionSizes:
    """How big the scenario is (``--quick`` or full)."""

    sessions: int  # registered
    active: int  # distinct sessions active at a time
    calls_per_session: int  # calls one activation gets
    think_s: float  # between two calls to one active session
    returning: float  # the share of activations that are a returning user's
    idle_timeout_s: float  # beamish: a session sleeps after this long without a message
    max_awake: int  # beamish: ``[node] max_awake``
    workload_s: float
    clients: int  # client threads driving the slots (and the pool's worker threads)
    sample_every_s: float  # how often the process count and the node's RSS are sampled


# Three client threads: each thread of a client keeps up to 256 doorbell sockets (one per
# agent it sent to, least recently used closed), and one ZeroMQ context holds at most 1,023
# sockets (libzmq's ZMQ_MAX_SOCKETS): four threads calling thousands of distinct sessions
# fail with "Too many open files". Three keep up with the offered load.
QUICK_SESSIONS = SessionSizes(sessions=10_000, active=250, calls_per_session=3, think_s=2.0,
                              returning=0.5, idle_timeout_s=4.0, max_awake=250,
                              workload_s=15.0, clients=3, sample_every_s=0.5)
FULL_SESSIONS = SessionSizes(sessions=100_000, active=1000, calls_per_session=3, think_s=5.0,
                             returning=0.5, idle_timeout_s=10.0, max_awake=1000,
                             workload_s=60.0, clients=3, sample_every_s=1.0)


def _log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# -- the threads side ---------------------------------------------------------------------------
class SessionPool:
    """Plain threads doing the sessions' job: ``workers`` threads, every session's state in
    a dict. A session is pinned to one worker (by its name's hash), so its calls are
    handled in order; its ``init`` runs on its first call (registering only records its
    args). State is in memory: nothing survives the process.

    Args:
        cls: the `Agent` subclass (or its ``"module:Class"`` path) each session runs.
        workers: the worker threads.
    """

    def __init__(self, cls: Any, workers: int) -> None:
        from .threads_runtime import load_class
        self._cls = load_class(cls)
        self._args: dict[str, dict[str, Any]] = {}
        self._states: dict[str, Any] = {}
        self._queues: list[queue.SimpleQueue[tuple[str, Any, Any, int] | None]] = [
            queue.SimpleQueue() for _ in range(workers)]
        self._local = threading.local()
        self._call_ids = itertools.count(1)
        self._threads = [threading.Thread(target=self._work, args=(q,), daemon=True,
                                          name=f"session-worker-{i}")
                         for i, q in enumerate(self._queues)]
        for t in self._threads:
            t.start()

    def register(self, name: str, args: dict[str, Any] | None = None) -> None:
        """Record a session; its ``init`` runs on its first call."""
        self._args[name] = dict(args or {})

    def call(self, name: str, msg: Any, timeout: float = 5.0) -> Any:
        """Have session ``name``'s worker handle ``msg``; return its reply.

        Raises:
            KeyError: no session has this name.
            CallTimeout: no reply within ``timeout``.
        """
        if name not in self._args:
            raise KeyError(f"no session {name!r}")
        slot: queue.SimpleQueue[tuple[int, bool, Any]] | None = getattr(self._local, "slot",
                                                                        None)
        if slot is None:
            slot = self._local.slot = queue.SimpleQueue()
        call_id = next(self._call_ids)
        self._queues[hash(name) % len(self._queues)].put((name, msg, slot, call_id))
        deadline = time.monotonic() + timeout
        while True:
            try:
                got, ok, value = slot.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise CallTimeout(name, timeout) from None
            if got != call_id:
                continue  # a late reply to an earlier call of this thread that timed out
            if not ok:
                raise value
            return value

    def _work(self, inbox: queue.SimpleQueue[tuple[str, Any, Any, int] | None]) -> None:
        agent = self._cls()
        states = self._states
        while (item := inbox.get()) is not None:
            name, msg, slot, call_id = item
            try:
                state = states[name] if name in states else agent.init(dict(self._args[name]))
                reply, states[name] = agent.handle_call(msg, state)
            except Exception as exc:  # noqa: BLE001 - the caller gets it, as a call's error
                slot.put((call_id, False, exc))
                continue
            slot.put((call_id, True, reply))

    def close(self) -> None:
        """Stop the workers (they finish what is queued first)."""
        for q in self._queues:
            q.put(None)
        for t in self._threads:
            t.join(10)


# -- the workload -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class CallRecord:
    """One call of the workload, as its client saw it."""

    at_s: float  # when it was sent, from the workload's start
    latency_ns: int
    first: bool  # the first call of this activation of the session
    woke: bool | None  # it started the session's process (None: the runtime cannot tell)
    initialized: bool  # the session's first call ever (its init ran for it)


@dataclass(frozen=True, slots=True)
class Driven:
    """What a workload did."""

    records: tuple[CallRecord, ...]
    errors: tuple[str, ...]  # calls that raised, as "Type: message"
    wrong_counts: tuple[str, ...]  # replies whose count was not the session's next one
    activations: int  # sessions taken into a slot
    returns: int  # of which had been active before (a returning user)
    seconds: float


class _Names:
    """Hands out the sessions to activate, never one active in another slot: a returning
    user (the session idle longest) with probability ``returning``, else one not seen
    yet (a seeded shuffle of them all, in turn)."""

    def __init__(self, n: int, active: int, returning: float, seed: int) -> None:
        if n <= active:
            raise ValueError(f"{n} sessions cannot keep {active} distinct ones active")
        self._order = [session_name(i) for i in range(n)]
        self._rng = random.Random(seed)
        self._rng.shuffle(self._order)
        self._returning = returning
        self._next = 0
        self._active: set[str] = set()
        self._idle: collections.deque[str] = collections.deque()  # longest idle first
        self._lock = threading.Lock()
        self.taken = 0
        self.returned = 0

    def take(self) -> str:
        with self._lock:
            while True:
                if self._idle and self._rng.random() < self._returning:
                    name = self._idle.popleft()
                    returned = True
                else:
                    name = self._order[self._next % len(self._order)]
                    self._next += 1
                    returned = False
                if name not in self._active:
                    self._active.add(name)
                    self.taken += 1
                    self.returned += returned
                    return name

    def release(self, name: str) -> None:
        with self._lock:
            self._active.discard(name)
            self._idle.append(name)


def session_name(i: int) -> str:
    """The name of the ``i``-th registered session."""
    return f"user-{i}"


def drive(call: Callable[[str, Any], Any], sz: SessionSizes, knows_wakes: bool,
          seed: int = 11) -> Driven:
    """Run the workload: ``sz.active`` slots, each calling its session every
    ``sz.think_s`` seconds and moving on to another session after
    ``sz.calls_per_session`` calls, for ``sz.workload_s`` seconds. The slots' first calls
    spread over one think time, and their first sessions get 1 to ``calls_per_session``
    calls, so that the slots change sessions at an even pace, not all at once.

    Args:
        call: ``call(name, msg)`` returns the session's reply.
        knows_wakes: the replies' ``fresh`` says whether the call started a process.
    """
    names = _Names(sz.sessions, sz.active, sz.returning, seed)
    counts: dict[str, int] = {}  # the last count each session answered
    records: list[CallRecord] = []
    errors: list[str] = []
    wrong: list[str] = []
    crashed: list[BaseException] = []
    start = time.monotonic()
    end = start + sz.workload_s
    clock = time.perf_counter_ns

    def client(k: int) -> None:
        # (when its next call is due, slot, its session, calls made in this activation,
        # calls it gets)
        slots = [(start + sz.think_s * i / sz.active, i, names.take(), 0,
                  sz.calls_per_session - i % sz.calls_per_session)
                 for i in range(k, sz.active, sz.clients)]
        heapq.heapify(slots)
        mine: list[CallRecord] = []
        try:
            while slots:
                due, i, name, made, calls = heapq.heappop(slots)
                now = time.monotonic()
                if due >= end or now >= end:  # behind schedule, a slot's due is in the past
                    break
                if due > now:
                    time.sleep(due - now)
                sent = time.monotonic() - start
                t0 = clock()
                try:
                    reply = call(name, {"text": "hi"})
                except (BeamishError, TimeoutError) as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")
                    reply = None
                latency = clock() - t0
                made += 1
                if reply is not None:
                    n = reply["n"]
                    if n != counts.get(name, 0) + 1:
                        wrong.append(f"{name}: answered count {n} after "
                                     f"{counts.get(name, 0)}")
                    counts[name] = n
                    mine.append(CallRecord(sent, latency, made == 1,
                                           bool(reply["fresh"]) if knows_wakes else None,
                                           n == 1))
                if made == calls:
                    names.release(name)
                    name, made, calls = names.take(), 0, sz.calls_per_session
                # Behind schedule by more than a think time: start afresh from now.
                due = max(due + sz.think_s, time.monotonic() - sz.think_s)
                heapq.heappush(slots, (due, i, name, made, calls))
        except BaseException as exc:  # noqa: BLE001 - re-raised by drive, in its thread
            crashed.append(exc)
        records.extend(mine)

    threads = [threading.Thread(target=client, args=(k,), name=f"sessions-client-{k}")
               for k in range(sz.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if crashed:
        raise crashed[0]
    records.sort(key=lambda r: r.at_s)
    return Driven(tuple(records), tuple(errors), tuple(wrong), names.taken, names.returned,
                  time.monotonic() - start)


def summarize(records: tuple[CallRecord, ...] | list[CallRecord]) -> dict[str, Any]:
    """Latencies by kind of call: ``woke`` (the call started the session's process),
    split into ``first_activation`` (init ran) and ``rewoke`` (from sleep); ``awake``
    (the process was there); and, for either runtime, ``first_call`` (the first call of
    an activation) and ``later_calls``. A kind with no calls is left out."""
    kinds: dict[str, list[int]] = {
        "woke": [r.latency_ns for r in records if r.woke],
        "first_activation": [r.latency_ns for r in records if r.woke and r.initialized],
        "rewoke": [r.latency_ns for r in records if r.woke and not r.initialized],
        "awake": [r.latency_ns for r in records if r.woke is False],
        "first_call": [r.latency_ns for r in records if r.first],
        "later_calls": [r.latency_ns for r in records if not r.first],
    }
    return {kind: latency_summary(ns) for kind, ns in kinds.items() if ns}


# -- sampling -----------------------------------------------------------------------------------
class _Sampler:
    """Calls ``probe`` every ``every`` seconds in a thread; keeps ``(t, *probe())``."""

    def __init__(self, probe: Callable[[], tuple[int, int]], every: float) -> None:
        self.samples: list[tuple[float, int, int]] = []
        self._probe = probe
        self._every = every
        self._stop = threading.Event()
        self._t0 = time.monotonic()
        self._thread = threading.Thread(target=self._run, daemon=True, name="sessions-sampler")
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            count, rss = self._probe()
            self.samples.append((time.monotonic() - self._t0, count, rss))
            self._stop.wait(self._every)

    def mark(self) -> float:
        """Seconds since the sampler started (to place an event on its timeline)."""
        return time.monotonic() - self._t0

    def stop(self) -> list[tuple[float, int, int]]:
        self._stop.set()
        self._thread.join(10)
        return self.samples


def timeline_summary(samples: list[tuple[float, int, int]], start: float, end: float
                     ) -> dict[str, Any]:
    """The process counts sampled between ``start`` and ``end`` (seconds on the sampler's
    clock): max, mean, and the last one; with the peak RSS among them."""
    inside = [s for s in samples if start <= s[0] <= end]
    if not inside:
        return {"samples": 0}
    counts = [s[1] for s in inside]
    return {"samples": len(inside), "max": max(counts), "mean": sum(counts) / len(counts),
            "last": counts[-1], "rss_bytes_max": max(s[2] for s in inside)}


# -- memory -------------------------------------------------------------------------------------
def _tree_memory(daemon_pid: int) -> dict[str, Any]:
    """The node daemon's RSS and USS, and the USS of it and every process under it."""
    import psutil
    daemon = psutil.Process(daemon_pid)
    info = daemon.memory_full_info()
    total, procs = info.uss, 1
    for child in daemon.children(recursive=True):
        try:
            total += child.memory_full_info().uss
            procs += 1
        except psutil.NoSuchProcess:
            continue  # it went to sleep meanwhile
    return {"node_rss_bytes": info.rss, "node_uss_bytes": info.uss,
            "total_uss_bytes": total, "processes": procs}


def _self_memory() -> dict[str, int]:
    import psutil
    info = psutil.Process().memory_full_info()
    return {"rss_bytes": info.rss, "uss_bytes": info.uss}


def _processes_under_zygote(daemon_pid: int) -> int:
    """The processes under the node's zygote: the awake agents and the warm children."""
    import psutil
    for child in psutil.Process(daemon_pid).children():
        try:
            if "zygote" in " ".join(child.cmdline()):
                return len(child.children())
        except psutil.NoSuchProcess:
            continue
    return 0


class _NodeProbe:
    """A sampler's probe of a beamish node: (agents awake, as ``node.status()`` counts
    them; the daemon's RSS). It also counts the ``slept`` events by reason and the
    ``woke`` events since it was made (read at every sample: the node keeps only its
    latest events)."""

    def __init__(self, node: Any) -> None:
        import psutil
        self._node = node
        self._daemon = psutil.Process(node.pid)
        self._seq = max((e.seq for e in node.events()), default=0)
        self.events: dict[str, int] = {}

    def __call__(self) -> tuple[int, int]:
        for e in self._node.events(after=self._seq):
            self._seq = max(self._seq, e.seq)
            if e.kind in ("slept", "woke"):
                key = e.kind if e.kind == "woke" else f"slept_{e.reason or 'unknown'}"
                self.events[key] = self.events.get(key, 0) + 1
        return self._node.status().awake, self._daemon.memory_info().rss


def node_log_errors(node_dir: str) -> dict[str, Any]:
    """The ERROR lines of the node's log (its rotated generations too, oldest first): how
    many, and the first few distinct ones (for a line with a traceback, the exception's
    line that ends it)."""
    count, kinds = 0, []

    def generation(path: str) -> int:  # node.log.3 is older than node.log.1, than node.log
        suffix = path.rpartition("node.log")[2].lstrip(".")
        return int(suffix) if suffix.isdigit() else 0
    for path in sorted(glob.glob(os.path.join(node_dir, "node.log*")), key=generation,
                       reverse=True):
        with open(path, errors="replace") as fh:
            lines = fh.read().splitlines()
        for i, line in enumerate(lines):
            if " ERROR " not in line:
                continue
            count += 1
            j = i + 1
            while j < len(lines) and (lines[j].startswith((" ", "Traceback"))):
                j += 1
            # a traceback ends with its exception's line (one with no timestamp)
            last = lines[j] if i + 1 < j < len(lines) and not lines[j][:4].isdigit() else line
            if last not in kinds and len(kinds) < 5:
                kinds.append(last)
    return {"errors": count, "distinct": kinds}


# -- the two runtimes ---------------------------------------------------------------------------
def _register(register: Callable[[str], Any], n: int, label: str) -> dict[str, Any]:
    clock = time.perf_counter_ns
    per: list[int] = []
    t0 = clock()
    step = max(1, n // 5)
    for i in range(n):
        s0 = clock()
        register(session_name(i))
        per.append(clock() - s0)
        if (i + 1) % step == 0 and i + 1 < n and clock() - t0 > 2e9:
            _log(f"[sessions] {label}: {i + 1:,} registered in {(clock() - t0) / 1e9:.1f} s")
    seconds = (clock() - t0) / 1e9
    return {"sessions": n, "seconds": seconds, "per_s": n / seconds,
            "one": latency_summary(per)}


def run_threads(sz: SessionSizes) -> dict[str, Any]:
    """The threads side: register, drive, measure."""
    before = _self_memory()
    pool = SessionPool(SESSION, workers=sz.clients)
    try:
        reg = _register(pool.register, sz.sessions, "threads")
        registered = _self_memory()
        _log(f"[sessions] threads: {sz.sessions:,} registered in {reg['seconds']:.2f} s")
        sampler = _Sampler(lambda: (threading.active_count(), _self_memory()["rss_bytes"]),
                           sz.sample_every_s)
        t_start = sampler.mark()
        driven = drive(lambda name, msg: pool.call(name, msg, CALL_TIMEOUT_S), sz,
                       knows_wakes=False)
        t_end = sampler.mark()
        loaded = _self_memory()
        samples = sampler.stop()
    finally:
        pool.close()
    out = _driven_figures(driven, sz)
    out.update({
        "how": f"a pool of {sz.clients} worker threads; each session's state in a dict, "
               "the session pinned to a worker by its name's hash; init on its first call",
        "registration": reg,
        "threads": timeline_summary(samples, t_start, t_end),
        "memory": {"before": before, "registered": registered, "after_workload": loaded,
                   "uss_growth_bytes": loaded["uss_bytes"] - before["uss_bytes"],
                   "rss_growth_bytes": loaded["rss_bytes"] - before["rss_bytes"],
                   "registered_uss_growth_bytes": registered["uss_bytes"]
                   - before["uss_bytes"]},
    })
    return out


def _driven_figures(driven: Driven, sz: SessionSizes) -> dict[str, Any]:
    calls = len(driven.records)
    if driven.errors:
        _log(f"[sessions] {len(driven.errors)} calls failed; first: {driven.errors[0]}")
    if driven.wrong_counts:
        _log(f"[sessions] {len(driven.wrong_counts)} wrong counts; first: "
             f"{driven.wrong_counts[0]}")
    steady = [r for r in driven.records if r.at_s >= sz.think_s]
    ramp = [r for r in driven.records if r.at_s < sz.think_s]
    return {"calls": calls, "calls_per_s": calls / driven.seconds,
            "activations": driven.activations, "returning_activations": driven.returns,
            "workload_s": driven.seconds,
            "latency": summarize(steady),
            "latency_ramp": {"how": f"the first {sz.think_s:g} s (one think time), when "
                                    "every slot's first session wakes: left out of latency",
                             **summarize(ramp)},
            "errors": len(driven.errors), "error_examples": list(driven.errors[:5]),
            "wrong_counts": len(driven.wrong_counts),
            "wrong_count_examples": list(driven.wrong_counts[:5])}


def _config(path: str, sz: SessionSizes) -> str:
    with open(path, "w") as fh:
        fh.write(f"[node]\nmax_awake = {sz.max_awake}\n\n"
                 f'[[supervisor]]\nname = "{SUPERVISOR}"\nparent = "root"\n'
                 'strategy = "one_for_one"\n')
    return path


def run_beamish(h: Any, sz: SessionSizes) -> dict[str, Any]:
    """The beamish side, on a node of its own (``max_awake`` is a node setting, and the
    other scenarios' node stays small): register, drive, cool down, measure, shut down."""
    import psutil

    from beamish.runtime import start_node
    base = h.node_dir or "/tmp"
    node_dir = os.path.join(base, "sess")
    t0 = time.perf_counter()
    node = start_node(node_dir, config=_config(os.path.join(base, "sessions.toml"), sz),
                      durability=h.durability)
    out: dict[str, Any] = {"node_start_s": time.perf_counter() - t0,
                           "max_awake": sz.max_awake, "idle_timeout_s": sz.idle_timeout_s}
    sampler: _Sampler | None = None
    try:
        empty = _tree_memory(node.pid)
        processes_empty = _processes_under_zygote(node.pid)
        reg = _register(
            lambda name: node.spawn(SESSION, name=name, supervisor=SUPERVISOR,
                                    idle_timeout=sz.idle_timeout_s, lazy=True),
            sz.sessions, "beamish")
        registered = _tree_memory(node.pid)
        processes_registered = _processes_under_zygote(node.pid)
        _log(f"[sessions] beamish: {sz.sessions:,} lazy sessions registered in "
             f"{reg['seconds']:.2f} s ({reg['per_s']:,.0f}/s); node RSS "
             f"{registered['node_rss_bytes'] / 2**20:.0f} MiB (empty: "
             f"{empty['node_rss_bytes'] / 2**20:.0f} MiB); processes under the zygote "
             f"{processes_registered} (before: {processes_empty})")
        status = node.info(session_name(sz.sessions - 1)).status
        if status != "sleeping":
            raise AssertionError(f"a lazy session registered as {status!r}, not 'sleeping'")
        probe = _NodeProbe(node)
        sampler = _Sampler(probe, sz.sample_every_s)
        t_start = sampler.mark()
        driven = drive(lambda name, msg: node.call(name, msg, CALL_TIMEOUT_S), sz,
                       knows_wakes=True)
        t_end = sampler.mark()
        processes_loaded = _processes_under_zygote(node.pid)
        loaded = _tree_memory(node.pid)
        _log(f"[sessions] beamish: workload done; {loaded['processes']} processes in the "
             f"node's tree, total USS {loaded['total_uss_bytes'] / 2**20:.0f} MiB; waiting "
             f"{sz.idle_timeout_s + 3:g} s for the idle ones to sleep")
        time.sleep(sz.idle_timeout_s + 3)
        t_cooled = sampler.mark()
        cooled = _tree_memory(node.pid)
        samples = sampler.stop()
        processes_cooled = _processes_under_zygote(node.pid)
    finally:
        if sampler is not None:
            sampler.stop()
        try:
            daemon = psutil.Process(node.pid)
            watched = [daemon, *daemon.children(recursive=True)]
        except psutil.Error:
            watched = []
        t0 = time.perf_counter()
        try:
            node.shutdown()
        finally:
            out["node_shutdown_s"] = time.perf_counter() - t0
            out["node_log"] = node_log_errors(node_dir)
            for proc in watched:
                try:
                    if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                        h.leftovers.append({"pid": proc.pid,
                                            "cmdline": " ".join(proc.cmdline())})
                        proc.kill()
                except psutil.Error:
                    continue
    out.update(_driven_figures(driven, sz))
    out.update({
        "registration": reg,
        "awake": {"how": "node.status().awake (agent processes the node holds), sampled",
                  "workload": timeline_summary(samples, t_start, t_end),
                  "cool_down": timeline_summary(samples, t_end, t_cooled),
                  "timeline": [{"t_s": round(t - t_start, 2), "awake": c,
                                "node_rss_bytes": r} for t, c, r in samples]},
        "events": probe.events,
        "processes_under_zygote": {
            "how": "the awake agents plus the zygote's warm children (forked ahead)",
            "empty_node": processes_empty, "registered": processes_registered,
            "after_workload": processes_loaded, "after_cool_down": processes_cooled},
        "memory": {"empty_node": empty, "registered": registered, "after_workload": loaded,
                   "after_cool_down": cooled},
    })
    return out


# -- targets ------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Target:
    """One of the sessions targets as this run measured it."""

    what: str
    figure: str
    met: bool


def judge(sessions: int, registration_s: float, node_rss_empty: int, node_rss: int,
          woke: dict[str, Any] | None) -> list[Target]:
    """The sessions targets that the scenario measures. Fewer sessions than the target's
    (``--quick``) are judged by their rate and by the node's RSS projected to the target's
    count (its growth per session, times the target's count, over the empty node's RSS);
    the figures say so."""
    n, goal = sessions, REGISTER_TARGET_SESSIONS
    rate = n / registration_s if registration_s > 0 else float("inf")
    target_mb = NODE_RSS_TARGET_BYTES / 1e6
    out: list[Target] = []
    if n >= goal:
        out.append(Target(f"{goal:,} lazy sessions registered in <= {REGISTER_TARGET_S:g} s",
                          f"{registration_s:.2f} s ({rate:,.0f}/s)",
                          registration_s <= REGISTER_TARGET_S * n / goal))
        out.append(Target(f"node RSS with {goal:,} sessions <= {target_mb:g} MB",
                          f"{node_rss / 1e6:.0f} MB", node_rss <= NODE_RSS_TARGET_BYTES))
    else:
        needed = goal / REGISTER_TARGET_S
        out.append(Target(f"{goal:,} lazy sessions registered in <= {REGISTER_TARGET_S:g} s "
                          f"(judged by the rate, >= {needed:,.0f}/s)",
                          f"{n:,} in {registration_s:.2f} s: {rate:,.0f}/s", rate >= needed))
        projected = node_rss_empty + (node_rss - node_rss_empty) * goal / n
        out.append(Target(f"node RSS with {goal:,} sessions <= {target_mb:g} MB "
                          f"(projected from {n:,})",
                          f"{projected / 1e6:.0f} MB projected ({node_rss / 1e6:.0f} MB "
                          f"with {n:,}, {node_rss_empty / 1e6:.0f} MB empty)",
                          projected <= NODE_RSS_TARGET_BYTES))
    if woke is None:
        out.append(Target(f"a call to a sleeping session answered in <= "
                          f"{WAKE_P50_TARGET_MS:g} ms p50, <= {WAKE_P99_TARGET_MS:g} ms p99",
                          "no call woke a session", False))
    else:
        p50, p99 = woke["p50_us"] / 1000, woke["p99_us"] / 1000
        out.append(Target(f"a call to a sleeping session answered in <= "
                          f"{WAKE_P50_TARGET_MS:g} ms p50, <= {WAKE_P99_TARGET_MS:g} ms p99",
                          f"p50 {p50:.1f} ms, p99 {p99:.1f} ms over {woke['n']:,} wakes",
                          p50 <= WAKE_P50_TARGET_MS and p99 <= WAKE_P99_TARGET_MS))
    return out


def _targets(b: dict[str, Any]) -> list[Target]:
    mem = b["memory"]
    return judge(b["registration"]["sessions"], b["registration"]["seconds"],
                 mem["empty_node"]["node_rss_bytes"], mem["registered"]["node_rss_bytes"],
                 b["latency"].get("woke"))


# -- the scenario -------------------------------------------------------------------------------
def sizes_for(sizes: Any) -> SessionSizes:
    """`QUICK_SESSIONS` for the run's quick sizes, else `FULL_SESSIONS`."""
    from ._scenarios import QUICK
    if dataclasses.replace(sizes, spawn_agents=QUICK.spawn_agents) == QUICK:
        return QUICK_SESSIONS
    return FULL_SESSIONS


def sessions(h: Any, sizes: Any) -> dict[str, Any]:
    """The scenario: the threads side, then beamish's; the targets it measures."""
    sz = sizes_for(sizes)
    out: dict[str, Any] = {"sizes": dataclasses.asdict(sz)}
    _log(f"[sessions] {sz.sessions:,} sessions, {sz.active:,} active at a time "
         f"({sz.calls_per_session} calls each, one every {sz.think_s:g} s), "
         f"{sz.workload_s:g} s; {sz.clients} client threads")
    out["threads"] = run_threads(sz)
    _log_side("threads", out["threads"])
    out["beamish"] = run_beamish(h, sz)
    _log_side("beamish", out["beamish"])
    b = out["beamish"]
    left = b["awake"]["cool_down"].get("last", 0)
    if left:
        _log(f"[sessions] beamish: WARNING: {left} sessions still awake "
             f"{sz.idle_timeout_s + 3:g} s after the workload, past their idle_timeout")
    if b["node_log"]["errors"]:
        _log(f"[sessions] beamish: WARNING: {b['node_log']['errors']} ERROR lines in the "
             f"node's log; {b['node_log']['distinct']}")
    targets = _targets(out["beamish"])
    out["targets"] = [dataclasses.asdict(t) for t in targets]
    for t in targets:
        _log(f"[sessions] target: {t.what}: {'met' if t.met else 'MISSED'} ({t.figure})")
    if out["beamish"]["wrong_counts"] or out["threads"]["wrong_counts"]:
        raise AssertionError("a session answered a count that was not its next one: "
                             f"{out['beamish']['wrong_count_examples'][:1]} "
                             f"{out['threads']['wrong_count_examples'][:1]}")
    return out


def _log_side(label: str, side: dict[str, Any]) -> None:
    lat = side["latency"]
    parts = [f"{kind} p50 {s['p50_us'] / 1000:.2f} ms p99 {s['p99_us'] / 1000:.2f} ms "
             f"(n={s['n']:,})" for kind, s in lat.items()
             if kind in ("woke", "awake", "first_call", "later_calls")]
    _log(f"[sessions] {label}: {side['calls']:,} calls ({side['calls_per_s']:,.0f}/s), "
         f"{side['activations']:,} activations, {side['errors']} errors; "
         + "; ".join(parts))


# -- the report ---------------------------------------------------------------------------------
def _ms(summary: dict[str, Any] | None, q: str) -> str:
    return "—" if summary is None else f"{summary[f'{q}_us'] / 1000:.2f}"


def table_rows(entry: Any) -> list[str]:
    """The scenario's rows of the report's main table (none if it did not run)."""
    if not isinstance(entry, dict) or "beamish" not in entry:
        return []
    b, t, sz = entry["beamish"], entry["threads"], entry["sizes"]
    bl, tl = b["latency"], t["latency"]
    n = sz["sessions"]
    mib = 2**20
    rows = [
        f"| sessions: register {n:,} | seconds | {b['registration']['seconds']:.2f} | "
        f"{t['registration']['seconds']:.2f} | — | beamish: lazy spawns; threads: dict |",
        f"| sessions: a call that wakes one | p50 / p99 ms | {_ms(bl.get('woke'), 'p50')} / "
        f"{_ms(bl.get('woke'), 'p99')} | {_ms(tl.get('first_call'), 'p50')} / "
        f"{_ms(tl.get('first_call'), 'p99')} | — | threads: first call of an activation |",
        f"| sessions: a call to an awake one | p50 ms | {_ms(bl.get('awake'), 'p50')} | "
        f"{_ms(tl.get('later_calls'), 'p50')} | — | |",
        f"| sessions: {sz['active']:,} active of {n:,} | calls/s | {b['calls_per_s']:,.0f} | "
        f"{t['calls_per_s']:,.0f} | — | offered {sz['active'] / sz['think_s']:,.0f}/s |",
        f"| sessions: awake (max · mean; after cool-down) | count | "
        f"{b['awake']['workload'].get('max', '—')} · "
        f"{b['awake']['workload'].get('mean', 0):.0f}; "
        f"{b['awake']['cool_down'].get('last', '—')} | {t['threads'].get('max', '—')} "
        f"threads | — | max_awake {b['max_awake']:,}; node log errors "
        f"{b['node_log']['errors']:,} |",
        f"| sessions: node RSS, {n:,} registered | MiB | "
        f"{b['memory']['registered']['node_rss_bytes'] / mib:.0f} | "
        f"{t['memory']['registered_uss_growth_bytes'] / mib:.0f}* | — | "
        "*threads: USS growth of the process |",
        f"| sessions: total USS after the workload | MiB | "
        f"{b['memory']['after_workload']['total_uss_bytes'] / mib:,.0f} | "
        f"{t['memory']['uss_growth_bytes'] / mib:.0f}* | — | beamish: node + every agent |",
    ]
    return rows


def target_rows(entry: Any) -> list[str]:
    """The scenario's rows of the report's targets table (none if it did not run)."""
    if not isinstance(entry, dict) or "targets" not in entry:
        return []
    return [f"| sessions: {t['what']} | {t['figure']} | "
            f"{'**met**' if t['met'] else '**missed**'} |" for t in entry["targets"]]

