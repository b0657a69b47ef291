"""EventLog over a real LMDB store: numbered from 1 (on from the stored latest after a
reopen), readers see what is committed, the latest ``kept`` kept, pages and filters."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from beamish.runtime._events import EventFilter, EventKind
from beamish.runtime.node.eventlog import EventLog
from beamish.runtime.store import open_store
from beamish.runtime.store.protocol import Store

EVERYTHING = EventFilter()


@pytest.fixture
def store(tmp_path) -> Iterator[Store]:
    s = open_store(str(tmp_path / "store"))
    yield s
    s.close()


def log_of(store: Store, n: int, kept: int) -> EventLog:
    log = EventLog(store, kept)
    for i in range(n):
        log.emit("exited", f"a{i + 1}", "root", "killed")
    log.flush()
    return log


@pytest.mark.parametrize(("emitted", "kept", "after", "seqs"), [
    (0, 5, 0, []),
    (3, 5, 0, [1, 2, 3]),
    (3, 5, 1, [2, 3]),
    (3, 5, 3, []),
    (3, 5, 9, []),  # a seq from the future: nothing yet
    (8, 5, 0, [4, 5, 6, 7, 8]),  # the older ones are gone: what is kept
    (8, 5, 5, [6, 7, 8]),
    (8, 5, 2, [4, 5, 6, 7, 8]),  # fell behind the kept window: all that is kept
])
def test_a_page_holds_the_kept_events_after_a_seq(store, emitted, kept, after, seqs):
    log = log_of(store, emitted, kept)
    page = log.page(after, EVERYTHING)
    assert [e.seq for e in page.events] == seqs
    assert not page.more and page.after == max([after, *seqs])
    assert log.seq == log.committed == emitted


def test_an_event_carries_what_was_emitted(store):
    log = EventLog(store, 4)
    log.emit("stopped", "a", "sup", "normal")
    log.emit("spawned", "b", "root", "")
    log.flush()
    a, b = log.page(0, EVERYTHING).events
    assert (a.kind, a.name, a.supervisor, a.reason, a.seq) == ("stopped", "a", "sup",
                                                              "normal", 1)
    assert (b.kind, b.reason, b.seq) == ("spawned", "", 2) and b.time >= a.time


def test_readers_see_only_what_is_committed(store):
    log = EventLog(store, 10)  # its writer not started: nothing commits by itself
    log.emit("spawned", "a", "root")
    assert log.seq == 1 and log.committed == 0
    assert log.page(0, EVERYTHING).events == []
    log.flush()
    assert log.committed == 1 and [e.name for e in log.page(0, EVERYTHING).events] == ["a"]


def test_the_writer_commits_soon_and_close_commits_the_rest(store):
    log = EventLog(store, 10, flush_s=0.01)
    log.start()
    log.emit("spawned", "a", "root")
    for _ in range(500):
        if log.committed == 1:
            break
        time.sleep(0.01)
    assert log.committed == 1
    log.emit("spawned", "b", "root")
    log.close()
    assert [e.name for e in EventLog(store, 10).page(0, EVERYTHING).events] == ["a", "b"]


def test_a_reopened_log_numbers_on_from_the_stored_latest(store):
    log_of(store, 3, 10)
    again = EventLog(store, 10)
    assert again.seq == again.committed == 3
    again.emit("woke", "x", "root", "")
    again.flush()
    assert [e.seq for e in again.page(0, EVERYTHING).events] == [1, 2, 3, 4]


def test_a_lower_cap_drops_the_oldest_at_the_next_commit(store):
    log_of(store, 10, 100)
    smaller = EventLog(store, 4)
    smaller.emit("woke", "x", "root", "")
    smaller.flush()
    assert [e.seq for e in smaller.page(0, EVERYTHING).events] == [8, 9, 10, 11]


@pytest.mark.parametrize(("limit", "after", "seqs", "more", "next_after"), [
    (3, 0, [1, 2, 3], True, 3),
    (3, 3, [4, 5, 6], True, 6),
    (3, 6, [7], False, 7),
    (7, 0, [1, 2, 3, 4, 5, 6, 7], False, 7),
    (10, 0, [1, 2, 3, 4, 5, 6, 7], False, 7),
])
def test_pages_cover_the_log_once(store, limit, after, seqs, more, next_after):
    log = log_of(store, 7, 100)
    page = log.page(after, EVERYTHING, limit)
    assert ([e.seq for e in page.events], page.more, page.after) == (seqs, more, next_after)


def test_a_filtered_page_reads_past_what_does_not_match(store):
    log = EventLog(store, 100)
    for i, kind in enumerate(["spawned", "exited", "restarted", "exited", "woke", "woke"]):
        log.emit(kind, f"a{i % 2}", "root")
    log.flush()
    exited = EventFilter(kinds=frozenset({EventKind.EXITED}))
    page = log.page(0, exited, 1)
    assert ([e.seq for e in page.events], page.more, page.after) == ([2], True, 2)
    page = log.page(2, exited, 1)
    # The last match: the page read to the end, so a follower starts after seq 6.
    assert ([e.seq for e in page.events], page.more, page.after) == ([4], False, 6)
    by_name = log.page(0, EventFilter(name="a1"))
    assert [e.seq for e in by_name.events] == [2, 4, 6]


def test_concurrent_emits_get_consecutive_seqs(store):
    log = EventLog(store, 10_000)
    log.start()
    threads = [threading.Thread(target=lambda: [log.emit("k", "a", "root") for _ in range(500)])
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log.close()
    seqs: list[int] = []
    after = 0
    while True:
        page = log.page(after, EVERYTHING)
        seqs += [e.seq for e in page.events]
        if not page.more:
            break
        after = page.after
    assert seqs == list(range(1, 2001))
