"""`PageFiller` (runtime/_events.py), the page rule every store's `events_page` uses: a
page holds up to ``limit`` matches; it says ``more`` only once one more match is read,
and then ``after`` is its last event's seq; otherwise ``after`` is the last event read,
matching or not (the reader has read the log up to there). One row per rule."""

from __future__ import annotations

import pytest

from beamish.runtime import Event
from beamish.runtime._events import EventFilter, PageFiller


def _log(*names: str) -> list[Event]:
    return [Event("exited", n, "root", "killed", 1.0, seq) for seq, n in
            enumerate(names, start=1)]


def _page(events: list[Event], after: int, flt: EventFilter, limit: int):
    filler = PageFiller(after, flt, limit)
    for event in events:
        if event.seq <= after:
            continue
        full = filler.add(event)
        if full is not None:
            return full
    return filler.end()


@pytest.mark.parametrize(("names", "after", "name", "limit", "seqs", "next_after", "more"), [
    ((), 0, None, 10, [], 0, False),  # an empty log
    (("a", "b", "c"), 0, None, 10, [1, 2, 3], 3, False),  # all fit
    (("a", "b", "c"), 0, None, 2, [1, 2], 2, True),  # full, and one more follows
    (("a", "b"), 0, None, 2, [1, 2], 2, False),  # exactly full: nothing follows
    (("a", "b", "a", "b"), 0, "a", 10, [1, 3], 4, False),  # skipped events still read
    (("a", "b", "a", "b"), 0, "a", 1, [1], 1, True),  # more: after is the last match
    (("a", "b", "a"), 1, None, 10, [2, 3], 3, False),  # starts after `after`
    (("b", "b"), 0, "a", 5, [], 2, False),  # no match: the reader is past them all
])
def test_a_page_holds_its_matches_and_says_where_the_next_starts(
        names, after, name, limit, seqs, next_after, more):
    page = _page(_log(*names), after, EventFilter(name=name), limit)
    assert [e.seq for e in page.events] == seqs
    assert (page.after, page.more) == (next_after, more)
