"""``beamish node drain`` on the node's side: a `Drainer` thread that drains the node's
membership (every shard handed off, one after another, none claimed; see
``cluster/drain.py`` and docs/cluster.md, "Hand-off and drain"), then stops the node.

The ``drain`` control request (``{"op": "drain", "timeout": s}``) starts it (once; a
second request reads its progress) and answers a `DrainStatus`. The client polls it. Once
the drain is over (done, or out of time), the answer that tells a client so also stops
the node, so that the outcome is delivered before the node stops answering; if no client
asks within `STOP_GRACE_S` the node stops by itself (the outcome is in its log).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .._types import WireMap
from .._validation import check_timeout
from ..cluster.drain import DrainPhase, DrainStatus, drain_phase, outcome_line, stalled
from ..errors import BeamishError, ConfigError, ErrorReply

if TYPE_CHECKING:  # psycopg is loaded only by a node in a cluster
    from ..cluster.placement import Plan
    from .cluster_node import ClusterNode

log = logging.getLogger("beamish.cluster")

POLL_S = 0.1  # how often the drainer looks at the membership
STOP_GRACE_S = 3.0  # how long a finished drain waits for a client to hear its outcome
DEFAULT_TIMEOUT_S = 120.0


class Drainer:
    """Drains one cluster node, then stops it (see the module docstring).

    Args:
        cluster: the node's part in its cluster.
        stop: stops the node (sets its ``stopping`` event).
        clock: monotonic seconds.
    """

    def __init__(self, cluster: ClusterNode, stop: Callable[[], None],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.cluster = cluster
        self._stop_node = stop
        self._clock = clock
        self._lock = threading.Lock()
        self._seen = threading.Lock()
        self._thread: threading.Thread | None = None
        self._started = 0.0
        self._timeout = DEFAULT_TIMEOUT_S
        self._at_start = 0
        self._rounds = 0
        self._stalled_since: float | None = None  # when the drain last became stalled
        self._last_plan: Plan | None = None
        self._final: DrainStatus | None = None
        self._told = threading.Event()  # a client heard the final status

    def request(self, timeout: float) -> DrainStatus:
        """Start the drain if it is not running (with ``timeout``), and return its status;
        once it is over, returning it stops the node (the caller answers first)."""
        with self._lock:
            if self._thread is None:
                self._start(timeout)
        st = self.status()
        if st.final:
            self._told.set()
            self._stop_node()
        return st

    def _start(self, timeout: float) -> None:
        self._timeout = timeout
        self._started = self._clock()
        membership = self.cluster.membership
        self._at_start = len(membership.held)
        self._last_plan = membership.last_plan
        membership.drain()
        log.info("node %s drains: %d shard(s) to hand off (timeout %g s)",
                 self.cluster.settings.node, self._at_start, timeout)
        self._thread = threading.Thread(target=self._run, name="beamish-drain", daemon=True)
        self._thread.start()

    def status(self) -> DrainStatus:
        """Where the drain is now (the final status once it is over)."""
        final = self._final
        if final is not None:
            return final
        membership = self.cluster.membership
        plan = membership.last_plan
        with self._seen:  # asked by the control loop and the drain thread alike
            if plan is not self._last_plan:  # a round ran since the last look
                self._last_plan = plan
                self._rounds += 1
            rounds = self._rounds
        held = len(membership.held)
        now = self._clock()
        elapsed = now - self._started
        stuck = stalled(held, rounds, len(plan.release), len(plan.waiting))
        with self._seen:
            if not stuck:
                self._stalled_since = None
            elif self._stalled_since is None:
                self._stalled_since = now
            stalled_for = 0.0 if self._stalled_since is None else now - self._stalled_since
        settings = self.cluster.settings
        return DrainStatus(
            settings.node, settings.cluster,
            drain_phase(membership.drained, elapsed, self._timeout, stalled_for),
            self._at_start, held, self.cluster.status().replicated, elapsed, self._timeout,
            stuck)

    def _run(self) -> None:
        last = (-1, False)
        while True:
            st = self.status()
            if (st.shards_left, st.stalled) != last:
                last = (st.shards_left, st.stalled)
                log.info("drain of node %s: %d of %d shard(s) left%s", st.node,
                         st.shards_left, st.shards_at_start,
                         " (no other node can take them now)" if st.stalled else "")
            if st.final:
                break
            time.sleep(POLL_S)
        self._final = st
        (log.info if st.phase is DrainPhase.DRAINED else log.warning)("%s", outcome_line(st))
        if not self._told.wait(STOP_GRACE_S):
            log.info("no client asked for the drain's outcome within %g s: the node stops",
                     STOP_GRACE_S)
            self._stop_node()


def drain_answer(drainer: Drainer | None, req: Any) -> WireMap:
    """The control answer to ``{"op": "drain", "timeout"?: s}``: the `DrainStatus`, or an
    error (``drainer`` None: the node is not in a cluster)."""
    try:
        if drainer is None:
            raise ConfigError("this node is not in a cluster (no [cluster] postgres in its "
                              "config): there is nothing to drain; `beamish node stop` "
                              "stops it")
        timeout = check_timeout(req.get("timeout", DEFAULT_TIMEOUT_S), "timeout")
        return {"ok": True, "value": drainer.request(timeout).to_wire()}
    except BeamishError as exc:
        return {"ok": False, "error": ErrorReply.of(exc).to_wire()}
