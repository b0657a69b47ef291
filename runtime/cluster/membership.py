"""The membership shell: a node's lease and shards, kept by two threads.

* the *round* thread joins the cluster, renews the lease on schedule (`lease_action`),
  and each round reads the shard table and the members, asks ``plan`` (pure) what to do,
  and does it through ``store/postgres/cluster.py``: drop what was lost, hand off (stop
  the shard's agents through ``on_lost``, then release), claim (bumping the epoch, then
  ``on_gained``). Two rules keep a restart of the database cheap, when every node fenced
  itself and joins again within a second or so: a node claims nothing in the round it
  joins (the next round, a renewal period later, sees the others that joined meanwhile,
  so each claims its own shards: the first one back does not claim them all, start all
  their agents and hand two thirds off again, a second cold start of each), and a round
  renews between its claims once a renewal is due (claims taken one by one from a slow
  database must not hold the renewal back until the node fences itself);
* the *watch* thread fences the node when its lease may be about to run out
  (`LeaseWatch`): it does not touch the database, so a renewal stuck on a cut link
  cannot delay the fence.

The owner (the node) hears of it through a `MembershipListener`:

* ``on_gained(shard, epoch)``: this node owns ``shard`` now at ``epoch``: every commit of
  its replicated agents carries that epoch. Wake its agents on demand.
* ``on_lost(shard)``: stop the shard's agents (and flush) before returning: for a
  hand-off the release follows at once and the successor may wake them.
* ``on_fenced()``: the lease may expire: stop every replicated agent now. Every shard is
  forgotten; when the lease is alive again (or the node joined again) its shards come
  back through ``on_gained`` with new epochs.

``on_gained`` and ``on_fenced`` never run at the same time and both must be quick (they
run under the membership's lock); ``on_lost`` runs on the round thread outside it. No
``on_gained`` comes after an ``on_fenced`` until a renewal succeeded again.

The node's listener is ``node/cluster_node.py``'s ``ClusterNode`` (docs/cluster.md says
what is and is not built).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Protocol

from ..errors import LeaseLost, NodeNameInUse, StoreError
from ..store.postgres.cluster import ClusterTable, Member
from .lease import LeaseAction, LeaseDecision, LeaseTiming, lease_action
from .placement import Lease, MemberView, Plan, ShardView, plan

log = logging.getLogger("beamish.cluster")


class MembershipListener(Protocol):
    """What the node does when the membership tells it something (see the module
    docstring for when each is called and what it must do)."""

    def on_gained(self, shard: int, epoch: int) -> None:
        """This node owns ``shard`` at ``epoch`` now."""

    def on_lost(self, shard: int) -> None:
        """This node no longer owns ``shard``: stop its agents before returning."""

    def on_fenced(self) -> None:
        """The lease may run out: stop every replicated agent now."""


class MonotonicClock:
    """The real clock: ``time.monotonic``."""

    def now(self) -> float:
        """Monotonic seconds."""
        return time.monotonic()


class Clock(Protocol):
    """A monotonic clock (``beamish.supervisor.testing.FakeClock`` is one)."""

    def now(self) -> float:
        """Monotonic seconds."""


class LeaseWatch:
    """When the lease was last renewed (by the send time of the renewal) and whether the
    node is fenced; `check` fences it, once, when `lease_action` says so.

    Args:
        timing: the lease's durations.
        on_fenced: called (under `lock`) when the node fences itself.
    """

    def __init__(self, timing: LeaseTiming, on_fenced: Callable[[], None]) -> None:
        self.timing = timing
        self.lock = threading.RLock()
        self._on_fenced = on_fenced
        self.last_sent_ok: float | None = None
        self.last_attempt: float | None = None
        self.fences = 0
        self.renewed_event = threading.Event()

    @property
    def alive(self) -> bool:
        """Whether the node may act as a member (it holds a lease it has not fenced)."""
        with self.lock:
            return self.last_sent_ok is not None

    def attempted(self, sent: float) -> None:
        """A renewal (or join) was sent at ``sent``."""
        with self.lock:
            self.last_attempt = sent

    def renewed(self, sent: float) -> None:
        """The renewal (or join) sent at ``sent`` succeeded (it was an attempt, too)."""
        with self.lock:
            if self.last_attempt is None or sent > self.last_attempt:
                self.last_attempt = sent
            if self.last_sent_ok is None or sent > self.last_sent_ok:
                self.last_sent_ok = sent
            self.renewed_event.set()

    def decide(self, now: float) -> LeaseDecision:
        """`lease_action` at ``now`` (nothing is done)."""
        with self.lock:
            return lease_action(now, self.last_sent_ok, self.last_attempt, self.timing)

    def check(self, now: float) -> LeaseDecision:
        """Fence the node if its lease may run out at ``now``; return the decision."""
        with self.lock:
            decision = self.decide(now)
            if decision.action is LeaseAction.FENCE:
                self.fence()
            return decision

    def fence(self) -> None:
        """Fence now (the lease ran out, or the database said it is lost)."""
        with self.lock:
            if self.last_sent_ok is None:
                return
            self.last_sent_ok = None
            self.fences += 1
            self._on_fenced()


def _view(m: Member) -> MemberView:
    state = Lease.EXPIRED if not m.alive else Lease.DRAINING if m.draining else Lease.ALIVE
    return MemberView(m.node, state)


class Membership:
    """One node's membership in its cluster (the module docstring says how it works).

    Args:
        connect: opens a `ClusterTable` (a new connection); called again after a
            connection fails.
        node: this node's name.
        address: how the other nodes reach it.
        listener: told of gained and lost shards and of fencing.
        timing: the lease's durations.
        clock: a monotonic clock (a ``FakeClock`` in tests that call `step` themselves).
        max_moves: at most this many hand-offs per round (paced rebalancing).
        pins: shards pinned to a node.
        agents: how many agents this node runs, reported at each renewal.
    """

    def __init__(self, connect: Callable[[], ClusterTable], node: str, address: str,
                 listener: MembershipListener, *, timing: LeaseTiming | None = None,
                 clock: Clock | None = None, max_moves: int = 1,
                 pins: Mapping[int, str] | None = None,
                 agents: Callable[[], int] | None = None) -> None:
        self.node = node
        self.address = address
        self.timing = timing or LeaseTiming()
        self.clock: Clock = clock or MonotonicClock()
        self.max_moves = max_moves
        self.pins = dict(pins or {})
        self._connect = connect
        self._listener = listener
        self._agents = agents
        self._table: ClusterTable | None = None
        self.incarnation: int | None = None
        self._joined = False
        self._held: dict[int, int] = {}
        self.watch = LeaseWatch(self.timing, self._fenced)
        self._stop = threading.Event()
        self._drain = False
        self._draining_marked = False
        self._threads: list[threading.Thread] = []
        self.last_plan = Plan()
        self._owned_in_table: int | None = None  # as the last round read the table

    # -- what the owner asks ------------------------------------------------------------
    @property
    def held(self) -> dict[int, int]:
        """The shards this node runs now, with their epochs (a copy)."""
        with self.watch.lock:
            return dict(self._held)

    @property
    def fenced(self) -> bool:
        """Whether the node holds no lease it may act on."""
        return not self.watch.alive

    def drain(self) -> None:
        """Hand every shard off (paced, as the plan allows) and claim none; `drained`
        tells when it is done."""
        self._drain = True

    @property
    def drained(self) -> bool:
        """Whether a drain asked for is over: the last round found no shard owned by this
        node in the table, and it holds none."""
        return self._drain and self._draining_marked and self._owned_in_table == 0 and \
            not self.held

    def start(self) -> None:
        """Start the round and watch threads."""
        for name, target in (("round", self._round_loop), ("watch", self._watch_loop)):
            t = threading.Thread(target=target, name=f"beamish-membership-{name}",
                                 daemon=True)
            t.start()
            self._threads.append(t)

    def halt(self) -> None:
        """Stop both threads and close the connection, without leaving: the lease runs
        out in the database (as if the node had died)."""
        self._stop.set()
        self.watch.renewed_event.set()
        for t in self._threads:
            t.join()
        self._threads.clear()
        self._close()

    def stop(self) -> None:
        """Stop the threads, stop every shard's agents (``on_lost``), and leave the
        cluster (the member row goes and the shards are released at once)."""
        self._stop.set()
        self.watch.renewed_event.set()
        for t in self._threads:
            t.join()
        self._threads.clear()
        with self.watch.lock:
            lost, self._held = sorted(self._held), {}
        for shard in lost:
            self._listener.on_lost(shard)
        if self.incarnation is not None and self._joined:
            try:
                self._table_now().leave(self.node, self.incarnation)
            except StoreError as e:
                log.warning("node %s could not leave its cluster (its lease will run "
                            "out instead): %s", self.node, e)
        self._close()

    # -- the threads --------------------------------------------------------------------
    def _round_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.step()
            except Exception:  # logged; the next round starts over on a new connection
                log.exception("membership round of node %s failed", self.node)
                self._close()
            now = self.clock.now()
            due = min(self.watch.decide(now).next_check, now + self.timing.renew_period)
            self._stop.wait(max(0.0, due - now))

    def _watch_loop(self) -> None:
        while not self._stop.is_set():
            decision = self.watch.check(self.clock.now())
            self.watch.renewed_event.clear()
            wait = max(0.0, decision.next_check - self.clock.now())
            if self.watch.alive:
                self.watch.renewed_event.wait(wait)
            else:
                self._stop.wait(self.timing.renew_period)

    # -- one round ------------------------------------------------------------------------
    def step(self) -> Plan:
        """One round: fence if due, join or renew if due, then plan and act; return the
        plan acted on (an empty one if the node is fenced or the database is away)."""
        decision = self.watch.check(self.clock.now())
        try:
            table = self._table_now()
            if not self._joined:
                self._join(table)
                return Plan()  # claims from the next round, with the others' joins seen
            if decision.action is LeaseAction.RENEW or not self.watch.alive:
                self._renew(table)
            if not self.watch.alive:
                return Plan()
            if self._drain and not self._draining_marked:
                assert self.incarnation is not None
                table.set_draining(self.node, self.incarnation)
                self._draining_marked = True
            return self._act(table)
        except StoreError as e:
            log.warning("node %s: %s", self.node, e)
            self._close()
            return Plan()

    def _join(self, table: ClusterTable) -> None:
        sent = self.clock.now()
        self.watch.attempted(sent)
        try:
            joined = table.join(self.node, self.address, self.timing.ttl,
                                previous=self.incarnation)
        except NodeNameInUse as e:
            log.warning("%s", e)
            return
        self.incarnation = joined.incarnation
        self._joined = True
        self._draining_marked = False
        self.watch.renewed(sent)
        log.info("node %s joined cluster %s (incarnation %d)", self.node, table.cluster,
                 joined.incarnation)

    def _renew(self, table: ClusterTable) -> None:
        assert self.incarnation is not None
        sent = self.clock.now()
        self.watch.attempted(sent)
        try:
            table.renew(self.node, self.incarnation, self.timing.ttl,
                        agents=self._agents() if self._agents else None)
        except LeaseLost as e:
            log.warning("%s", e)
            self.watch.fence()
            self._joined = False
            return
        self.watch.renewed(sent)

    def _act(self, table: ClusterTable) -> Plan:
        assert self.incarnation is not None
        rows = [ShardView(r.shard, r.owner, r.epoch) for r in table.shard_rows()]
        members = [_view(m) for m in table.members()]
        self._owned_in_table = sum(1 for r in rows if r.owner == self.node)
        with self.watch.lock:
            held = dict(self._held)
        p = plan(rows, members, self.node, held, self.pins, self.max_moves)
        self.last_plan = p
        for shard in p.lost:
            self._drop(shard)
        for row in p.release:
            self._drop(row.shard)
            table.release(row.shard, self.node, row.epoch)
        for c in p.claim:
            if self.watch.decide(self.clock.now()).action is LeaseAction.RENEW:
                self._renew(table)  # claims one by one from a slow database: renew between
            epoch = table.claim(c.shard, self.node, self.incarnation, c.owner, c.epoch)
            if epoch is None:
                continue
            with self.watch.lock:
                if not self.watch.alive:
                    break  # fenced meanwhile: the next live round claims it again
                self._held[c.shard] = epoch
                self._listener.on_gained(c.shard, epoch)
        return p

    def _drop(self, shard: int) -> None:
        with self.watch.lock:
            had = self._held.pop(shard, None) is not None
        if had:
            self._listener.on_lost(shard)

    def _fenced(self) -> None:
        # Called by LeaseWatch under its lock.
        self._held.clear()
        log.warning("node %s fenced itself: its lease may run out; every replicated "
                    "agent stops", self.node)
        self._listener.on_fenced()

    def _table_now(self) -> ClusterTable:
        if self._table is None:
            self._table = self._connect()
        return self._table

    def _close(self) -> None:
        table, self._table = self._table, None
        if table is not None:
            try:
                table.close()
            except Exception as e:  # a broken connection may fail to close; it is gone
                log.debug("closing the cluster connection: %s", e)
