"""The cluster's event log of replicated agents (table ``beamish_cluster_events``): every
node writes there the events of the replicated agents it owns (``node/cluster_events.py``),
so that ``beamish events --name N`` of a replicated agent, asked on any node, shows its
events across its owners.

Events are numbered by one counter row per cluster (``beamish_counters``, name
``event_seq``), taken in the appending transaction: the row stays locked until that
commit, so seqs are committed in their order, and a reader that saw seq N will never see
a smaller one appear later (a follower's ``after`` cursor misses nothing). The log keeps
the latest ``kept`` events.

The functions take a `PgTxn` (run them with `PgStore.read` / `PgStore.write`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from beamish.mailbox import pack, unpack

from ..._events import EventFilter, EventPage, PageFiller
from ..._types import Event
from ..protocol import Txn
from ..records import event_from_wire, event_to_wire
from .txn import PgTxn

_BATCH = 256  # events read at a time while a filtered page looks for its matches
SEQ_COUNTER = "event_seq"


def _pg(t: Txn) -> PgTxn:
    assert isinstance(t, PgTxn), "the cluster's event log lives in PostgreSQL"
    return t


def append_events(events: Sequence[Event], kept: int) -> Callable[[Txn], int]:
    """The transaction that appends ``events`` (their seqs ignored: numbered here, in
    order) and drops the oldest beyond ``kept``; it returns the last seq given."""
    def txn(t: Txn) -> int:
        pg = _pg(t)
        n = len(events)
        last = int(pg._one(
            "INSERT INTO beamish_counters (cluster, name, value) VALUES (%s, %s, %s) "
            "ON CONFLICT (cluster, name) DO UPDATE SET value = beamish_counters.value + %s "
            "RETURNING value", (pg.c, SEQ_COUNTER, n, n))[0])
        if n:
            pg.cur.execute(
                "INSERT INTO beamish_cluster_events (cluster, seq, name, event) "
                "SELECT %s, s, n, e FROM unnest(%s::bigint[], %s::text[], %s::bytea[]) "
                "AS u(s, n, e)",
                (pg.c, list(range(last - n + 1, last + 1)), [e.name for e in events],
                 [pack(event_to_wire(e)) for e in events]))
            pg.cur.execute("DELETE FROM beamish_cluster_events WHERE cluster = %s AND "
                           "seq <= %s", (pg.c, last - kept))
        return last
    return txn


def known(name: str) -> Callable[[Txn], bool]:
    """The read that says whether ``name`` is a replicated agent's, now or in the log (a
    record, or an event about it)."""
    def txn(t: Txn) -> bool:
        pg = _pg(t)
        return pg._one(
            "SELECT EXISTS (SELECT 1 FROM beamish_agents WHERE cluster = %s AND name = %s) "
            "OR EXISTS (SELECT 1 FROM beamish_cluster_events WHERE cluster = %s AND "
            "name = %s)", (pg.c, name, pg.c, name))[0] is True
    return txn


def events_page(after: int, flt: EventFilter, limit: int) -> Callable[[Txn], EventPage]:
    """The read of up to ``limit`` events after seq ``after`` that pass ``flt``, oldest
    first (as `..protocol.Txn.events_page`); a name filter reads only that agent's
    events (by index)."""
    def txn(t: Txn) -> EventPage:
        pg = _pg(t)
        page = PageFiller(after, flt, limit)
        by_name = "" if flt.name is None else " AND name = %s"
        while True:
            rows = pg.cur.execute(
                f"SELECT seq, event FROM beamish_cluster_events WHERE cluster = %s{by_name} "
                "AND seq > %s ORDER BY seq LIMIT %s",
                (pg.c, *(() if flt.name is None else (flt.name,)), max(page.read, 0),
                 _BATCH)).fetchall()
            for seq, raw in rows:
                full = page.add(event_from_wire(int(seq), unpack(raw)))
                if full is not None:
                    return full
            if len(rows) < _BATCH:
                return page.end()
    return txn
