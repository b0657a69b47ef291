"""Rows nobody will take any more, swept (bounded, periodic, by the database's clock):

* the replies to calls whose caller gave up (``beamish_replies.expires``: the call's
  deadline, a Unix time of the node that asked) more than `REPLY_GRACE_S` ago by the
  database's clock; the grace covers the nodes' clock skew, so a reply its caller may
  still take is never swept;
* link signals addressed to a node incarnation that is gone (the node left, joined
  again since, or its lease ran out by the database's clock: a fenced node joins again
  under a new incarnation, and a receiver drops signals for an earlier one anyway), and
  the monitors of replicated agents held by a node-pinned watcher whose node
  incarnation is gone the same way (`links.py`'s tables). A monitor held by a
  replicated watcher (``node = ''``) follows its agent, not a node: it is never swept
  here. A row of a live incarnation, or of a later one, is never touched.

Each statement deletes at most ``limit`` rows, picked with ``SKIP LOCKED`` (every node
sweeps; none waits on another's sweep). `sweep` returns what it removed; a sweep that hit
its limit is repeated soon by its caller (`Sweeper`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from ..protocol import Txn
from .txn import PgTxn

REPLY_GRACE_S = 60.0  # how long after its caller's deadline a reply is kept
SWEEP_S = 30.0  # how often a node sweeps
SWEEP_LIMIT = 1000  # rows per table per sweep

_REPLIES = """
DELETE FROM beamish_replies WHERE (cluster, msg_id) IN (
    SELECT cluster, msg_id FROM beamish_replies
     WHERE cluster = %(c)s
       AND expires < EXTRACT(EPOCH FROM clock_timestamp()) - %(grace)s
     LIMIT %(limit)s FOR UPDATE SKIP LOCKED)"""

_SIGNALS = """
DELETE FROM beamish_link_signals WHERE id IN (
    SELECT s.id FROM beamish_link_signals s
     WHERE s.cluster = %(c)s
       AND NOT EXISTS (SELECT 1 FROM beamish_members m
                        WHERE m.cluster = s.cluster AND m.node = s.to_node
                          AND m.incarnation <= s.to_incarnation
                          AND m.lease_expires > clock_timestamp())
     LIMIT %(limit)s FOR UPDATE OF s SKIP LOCKED)"""

_WATCHES = """
DELETE FROM beamish_link_watches WHERE ref IN (
    SELECT w.ref FROM beamish_link_watches w
     WHERE w.cluster = %(c)s AND w.node <> ''
       AND NOT EXISTS (SELECT 1 FROM beamish_members m
                        WHERE m.cluster = w.cluster AND m.node = w.node
                          AND m.incarnation <= w.incarnation
                          AND m.lease_expires > clock_timestamp())
     LIMIT %(limit)s FOR UPDATE OF w SKIP LOCKED)"""


@dataclass(frozen=True, slots=True)
class Swept:
    """How many rows one `sweep` removed, by table.

    Attributes:
        replies: replies whose caller gave up.
        signals: link signals to gone node incarnations.
        watches: monitors of replicated agents held by gone watchers.
    """

    replies: int
    signals: int
    watches: int

    def full(self, limit: int) -> bool:
        """Whether a table hit ``limit`` (more may be left: sweep again soon)."""
        return max(self.replies, self.signals, self.watches) >= limit


def sweep(t: Txn, limit: int = SWEEP_LIMIT, grace: float = REPLY_GRACE_S) -> Swept:
    """Remove up to ``limit`` rows of each kind nobody will take (module docstring), in
    transaction ``t`` (a `PgStore`'s)."""
    assert isinstance(t, PgTxn), t
    args = {"c": t.c, "limit": limit, "grace": grace}
    return Swept(t.cur.execute(_REPLIES, args).rowcount,
                 t.cur.execute(_SIGNALS, args).rowcount,
                 t.cur.execute(_WATCHES, args).rowcount)


class Sweeper:
    """When a node sweeps: every `SWEEP_S`, and again at once (its next round) after a
    sweep that hit its limit. Not thread-safe: the node's worker owns it."""

    def __init__(self, every: float = SWEEP_S, limit: int = SWEEP_LIMIT) -> None:
        self.every = every
        self.limit = limit
        self._next = time.monotonic() + every

    def due(self, now: float) -> bool:
        """Whether a sweep is due at monotonic time ``now``."""
        return now >= self._next

    def done(self, swept: Swept | None, now: float) -> None:
        """Note a sweep's outcome at ``now`` (None: it failed)."""
        self._next = now if swept is not None and swept.full(self.limit) \
            else now + self.every
