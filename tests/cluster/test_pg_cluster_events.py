"""The cluster's event log of replicated agents (store/postgres/events.py) on a real
PostgreSQL: nodes appending at once get seqs in commit order with no gap and no
duplicate, a reader filters by name through the index, and the log keeps the latest."""

from __future__ import annotations

import threading
import time

from beamish.runtime._events import EventFilter, EventKind
from beamish.runtime._types import Event
from beamish.runtime.store import open_postgres_store
from beamish.runtime.store.postgres.events import append_events, events_page, known

CLUSTER = "ev"


def _event(name: str, kind: str = "exited") -> Event:
    return Event(kind, name, "root", "abnormal: exit code 3", time.time())


def test_appends_from_many_writers_are_numbered_in_commit_order(pg_dsn: str) -> None:
    stores = [open_postgres_store(pg_dsn, CLUSTER) for _ in range(4)]
    try:
        def write(i: int) -> None:
            for _ in range(25):
                stores[i].write(append_events([_event(f"a{i}"), _event(f"a{i}", "backoff")],
                                              10_000))
        threads = [threading.Thread(target=write, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        page = stores[0].read(events_page(0, EventFilter(), 1000))
        assert [e.seq for e in page.events] == list(range(1, 201))
        assert not page.more
        mine = stores[0].read(events_page(0, EventFilter(name="a2"), 1000)).events
        assert len(mine) == 50 and {e.name for e in mine} == {"a2"}
        # Each writer's pairs stay together and in order: one transaction, one block.
        assert [e.kind for e in mine] == ["exited", "backoff"] * 25
        kinds = stores[0].read(events_page(0, EventFilter(name="a2", kinds=frozenset(
            {EventKind.BACKOFF})), 10)).events
        assert len(kinds) == 10 and {e.kind for e in kinds} == {"backoff"}
        assert stores[0].read(known("a1")) and not stores[0].read(known("nobody"))
        # The log keeps the latest ``kept``.
        stores[0].write(append_events([_event("late")], 50))
        left = stores[0].read(events_page(0, EventFilter(), 1000)).events
        assert [e.seq for e in left] == list(range(152, 202))
    finally:
        for s in stores:
            s.close()
