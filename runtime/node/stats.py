"""The node's figures in one typed snapshot (`NodeStats`), read by the metrics endpoint
(``metrics.py``, Prometheus) and by ``beamish top`` (the ``stats`` command).

    spawner: live processes ─┐
    store: one read txn ─────┼─▶ StatsReader.take() ──▶ NodeStats ──▶ metrics.py / stats
    .busy files, psutil ─────┘                                       (``beamish top``)

The cost is bounded by the agents that have a process, never by all agents: a node with
100,000 sleeping sessions builds no per-agent object for them.

- Per agent, only for agents with a live process (``awake``): mailbox depth, messages
  handled, dead letters (one store read for all, the same reads as ``ps``), the handler
  latency histogram (the agent's ``.busy`` file: one small read), restarts by failure
  kind (`ExitTally`, in memory), RSS and CPU seconds (psutil: /proc/PID/statm and stat),
  USS (psutil reads /proc/PID/smaps_rollup: cached, each process measured at most every
  `USS_EVERY_S`, and at most `USS_PER_TAKE` of them per snapshot).
- For everyone, counts by status: a walk of the routes (two fields per agent, about 1 µs
  each: ~0.1 s for 100,000), cached for `STATUS_COUNTS_EVERY_S`.

Counters held in memory (`ExitTally`: restarts by kind, the latency of exited processes)
start again at 0 when the node does, which Prometheus counters allow.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import psutil

from .._paths import NodePaths
from .._types import DroppedFrames, WireMap
from ..agent.inflight import LATENCY_BOUNDS_S, Latency, read_latency
from ..store.protocol import Store, Txn
from .bounded import Bounded

STATUS_COUNTS_EVERY_S = 5.0
"""Counts by status are read again at most this often (a walk of every agent's route)."""
USS_EVERY_S = 5.0
"""A process's USS is measured at most this often (psutil reads its smaps)."""
USS_PER_TAKE = 200
"""At most this many USS measurements per snapshot (the oldest first; the others keep
their last value until the next snapshot)."""
AGENTS_KEPT = 10_000
"""Agents whose exit tallies `ExitTally` keeps (the least recently exited are dropped:
their counters then start again at 0, as after a node restart)."""


@dataclass(frozen=True, slots=True)
class LiveProcess:
    """An agent's process as the spawner knows it, for a snapshot.

    Attributes:
        name: the agent.
        id: its id (its mailbox, state and ``.busy`` file).
        inc: the process's incarnation.
        pid: the process.
        create_time: the process's start time (psutil's), to know a reused pid.
        carried: the latency histogram of the agent's earlier processes (`ExitTally`).
        restarts_by_kind: the agent's restarts by failure kind (`ExitTally`).
    """

    name: str
    id: int
    inc: int
    pid: int
    create_time: float | None
    carried: Latency = field(default_factory=Latency)
    restarts_by_kind: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AgentStats:
    """One awake agent in a `NodeStats` snapshot.

    Attributes:
        name: the agent.
        pid: its process.
        status: its status (running, for an awake agent, or starting/restarting in a race).
        supervisor: its supervisor.
        mailbox_depth: messages waiting in its mailbox.
        processed: messages it has handled, committed with its state (over its life).
        dead_letters: the casts it set aside (``beamish dead-letters``).
        restarts: its restarts, as ``ps`` counts them (stored, over its life).
        restarts_by_kind: its restarts since the node started, by failure kind
            (exception, exit, signal, oom, timeout, cpu, killed).
        latency: its handler latency histogram since the node started (bounds:
            `NodeStats.latency_bounds`).
        rss_bytes: its process's resident memory.
        uss_bytes: its process's unique memory (what killing it would free), measured at
            most every `USS_EVERY_S`; None before the first measurement.
        cpu_seconds: its process's CPU time (user + system), for a rate.
    """

    name: str
    pid: int
    status: str
    supervisor: str
    mailbox_depth: int
    processed: int
    dead_letters: int
    restarts: int
    restarts_by_kind: dict[str, int]
    latency: Latency
    rss_bytes: int
    uss_bytes: int | None
    cpu_seconds: float

    @classmethod
    def from_wire(cls, data: WireMap) -> AgentStats:
        """Rebuild it from the ``stats`` command's answer."""
        lat = data["latency"]
        return cls(**{**data, "restarts_by_kind": dict(data["restarts_by_kind"]),
                      "latency": Latency(tuple(lat["counts"]), float(lat["sum_seconds"]))})


@dataclass(frozen=True, slots=True)
class NodeStats:
    """A snapshot of the node: its own figures, counts for every agent, and per-agent
    figures for the awake ones (``node.stats()``, ``beamish top``, ``/metrics``).

    Attributes:
        pid: the daemon's pid.
        uptime: seconds since the node started.
        rss_bytes: the daemon's resident memory.
        cpu_seconds: the daemon's CPU time.
        awake: agents with a process now.
        by_status: how many agents have each status, sleeping ones included (read at most
            every `STATUS_COUNTS_EVERY_S`: see ``status_age``).
        status_age: how old ``by_status`` is, in seconds.
        dropped: the invalid frames dropped so far, by socket.
        events: how many events the node has emitted since it started.
        restarts_by_kind: every agent's restarts since the node started, by failure kind.
        latency_bounds: the upper bounds of the latency buckets, in seconds (one more
            bucket holds the slower messages).
        agents: the awake agents, in name order.
        time: when it was taken (``time.time()``).
    """

    pid: int
    uptime: float
    rss_bytes: int
    cpu_seconds: float
    awake: int
    by_status: dict[str, int]
    status_age: float
    dropped: DroppedFrames
    events: int
    restarts_by_kind: dict[str, int]
    latency_bounds: list[float]
    agents: list[AgentStats]
    time: float

    @property
    def sleeping(self) -> int:
        """How many agents sleep (no process; their next message wakes them)."""
        return self.by_status.get("sleeping", 0)

    @classmethod
    def from_wire(cls, data: WireMap) -> NodeStats:
        """Rebuild it from the ``stats`` command's answer."""
        return cls(**{**data, "by_status": dict(data["by_status"]),
                      "dropped": DroppedFrames(**data["dropped"]),
                      "restarts_by_kind": dict(data["restarts_by_kind"]),
                      "latency_bounds": [float(b) for b in data["latency_bounds"]],
                      "agents": [AgentStats.from_wire(a) for a in data["agents"]]})


def cumulative_buckets(latency: Latency, bounds: tuple[float, ...] | list[float]
                       ) -> list[tuple[str, int]]:
    """The histogram as Prometheus states it (pure): ``(le, count at or below it)`` for
    each bound, then ``("+Inf", count)``."""
    out: list[tuple[str, int]] = []
    total = 0
    for bound, n in zip([*bounds, None], latency.counts, strict=True):
        total += n
        out.append(("+Inf" if bound is None else repr(float(bound)), total))
    return out


class ExitTally:
    """What the node counts about agents' exits for its figures (thread-safe): restarts
    by failure kind, node-wide and per agent, and the latency histograms of exited
    processes (so an agent's histogram keeps counting across its restarts and sleeps).
    Per agent it keeps the `AGENTS_KEPT` most recently exited.
    """

    def __init__(self, kept: int = AGENTS_KEPT) -> None:
        self._lock = threading.Lock()
        self._latency: Bounded[str, Latency] = Bounded(kept)
        self._kinds: Bounded[str, dict[str, int]] = Bounded(kept)
        self._totals: dict[str, int] = {}

    def exited(self, name: str, latency: Latency | None) -> None:
        """Agent ``name``'s process exited having counted ``latency`` (None: unknown)."""
        if latency is None or not latency.count:
            return
        with self._lock:
            before = self._latency.pop(name)
            self._latency.put(name, latency if before is None else before + latency)

    def restarted(self, name: str, kind: str) -> None:
        """Agent ``name`` failed with ``kind`` and goes back to its supervisor."""
        with self._lock:
            kinds = self._kinds.pop(name) or {}
            kinds[kind] = kinds.get(kind, 0) + 1
            self._kinds.put(name, kinds)
            self._totals[kind] = self._totals.get(kind, 0) + 1

    def carried(self, name: str) -> tuple[Latency, dict[str, int]]:
        """Agent ``name``'s tallies: its exited processes' latency and restarts by kind."""
        with self._lock:
            latency = self._latency.get(name)
            kinds = self._kinds.get(name)
            return latency or Latency(), dict(kinds or {})

    def totals(self) -> dict[str, int]:
        """Every agent's restarts by failure kind since the node started."""
        with self._lock:
            return dict(self._totals)


@dataclass(frozen=True, slots=True)
class _Row:
    """What one store read gives for an awake agent."""

    status: str
    supervisor: str
    restarts: int
    depth: int
    processed: int
    dead: int


class StatsReader:
    """Takes `NodeStats` snapshots (any thread; concurrent takes share the caches).

    Args:
        paths: the node's files (the agents' ``.busy`` files).
        store: the node's store.
        live: the agents' live processes now (the spawner's `live_processes`).
        tally: the spawner's `ExitTally`.
        events: how many events the node has emitted.
        dropped: the invalid frames dropped so far.
        started_at: when the node started (``time.time()``).
    """

    def __init__(self, paths: NodePaths, store: Store, *, live: Callable[[], list[LiveProcess]],
                 tally: ExitTally, events: Callable[[], int],
                 dropped: Callable[[], DroppedFrames], started_at: float) -> None:
        self.paths = paths
        self.store = store
        self.live = live
        self.tally = tally
        self.events = events
        self.dropped = dropped
        self.started_at = started_at
        self._lock = threading.Lock()
        self._by_status: dict[str, int] = {}
        self._status_at = -float("inf")  # monotonic
        self._uss: dict[tuple[int, float | None], tuple[int, float]] = {}  # -> (uss, at)
        self._me = psutil.Process()

    def take(self) -> NodeStats:
        """A snapshot now."""
        live = self.live()
        now = time.monotonic()
        with self._lock:
            stale = now - self._status_at >= STATUS_COUNTS_EVERY_S
        rows, by_status = self.store.read(lambda t: self._read(t, live, stale))
        with self._lock:
            if by_status is not None:
                self._by_status, self._status_at = by_status, now
            by_status, status_age = dict(self._by_status), now - self._status_at
        uss = self._uss_of(live, now)
        agents: list[AgentStats] = []
        for proc in live:
            row = rows.get(proc.name)
            latency = read_latency(self.paths.agent_busy(proc.id), proc.inc)
            usage = _usage(proc)
            if row is None or latency is None or usage is None:
                continue  # replaced or gone since `live`: left out of this snapshot
            agents.append(AgentStats(
                proc.name, proc.pid, row.status, row.supervisor, row.depth, row.processed,
                row.dead, row.restarts, dict(proc.restarts_by_kind), proc.carried + latency,
                usage[0], uss.get((proc.pid, proc.create_time)), usage[1]))
        agents.sort(key=lambda a: a.name)
        with self._me.oneshot():
            rss = int(self._me.memory_info().rss)
            times = self._me.cpu_times()
        return NodeStats(os.getpid(), time.time() - self.started_at, rss,
                         float(times.user + times.system), len(live), by_status, status_age,
                         self.dropped(), self.events(), self.tally.totals(),
                         list(LATENCY_BOUNDS_S), agents, time.time())

    @staticmethod
    def _read(t: Txn, live: list[LiveProcess], with_counts: bool
              ) -> tuple[dict[str, _Row], dict[str, int] | None]:
        rows: dict[str, _Row] = {}
        for proc in live:
            rec = t.get_agent(proc.name)
            if rec is None or rec.id != proc.id:
                continue
            rows[proc.name] = _Row(str(rec.status), rec.supervisor, rec.restarts,
                                   t.depth(proc.id), t.processed(proc.id),
                                   t.dead_count(proc.id))
        return rows, t.status_counts() if with_counts else None

    def _uss_of(self, live: list[LiveProcess], now: float) -> dict[tuple[int, float | None], int]:
        """The live processes' USS: cached, the oldest `USS_PER_TAKE` of those measured
        over `USS_EVERY_S` ago measured again."""
        keys = [(p.pid, p.create_time) for p in live]
        with self._lock:
            self._uss = {k: self._uss[k] for k in keys if k in self._uss}
            due = sorted((k for k in keys if now - self._uss.get(k, (0, -float("inf")))[1]
                          >= USS_EVERY_S), key=lambda k: self._uss.get(k, (0, -float("inf")))[1])
        for key in due[:USS_PER_TAKE]:
            try:
                proc = psutil.Process(key[0])
                if proc.create_time() != key[1]:
                    continue
                value = int(proc.memory_full_info().uss)
            except psutil.Error:
                continue  # gone, or not ours to read: no USS for it
            with self._lock:
                self._uss[key] = (value, now)
        with self._lock:
            return {k: v[0] for k, v in self._uss.items()}


def _usage(proc: LiveProcess) -> tuple[int, float] | None:
    """RSS and CPU seconds of the process, or None if it is gone (or its pid reused)."""
    try:
        p = psutil.Process(proc.pid)
        with p.oneshot():
            if proc.create_time is not None and p.create_time() != proc.create_time:
                return None
            times = p.cpu_times()
            return int(p.memory_info().rss), float(times.user + times.system)
    except psutil.Error:
        return None
