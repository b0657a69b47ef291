"""EventLog: numbered from 1, the latest ``kept`` kept, ``since`` returns what follows a seq."""

from __future__ import annotations

import threading

import pytest

from beamish.runtime.node.registry import EventLog


def log_of(n: int, kept: int) -> EventLog:
    log = EventLog(kept)
    for i in range(n):
        log.emit("exited", f"a{i + 1}", "root", "killed")
    return log


@pytest.mark.parametrize(("emitted", "kept", "since", "seqs"), [
    (0, 5, 0, []),
    (3, 5, 0, [1, 2, 3]),
    (3, 5, 1, [2, 3]),
    (3, 5, 3, []),
    (3, 5, 9, []),  # a seq from the future: nothing yet
    (8, 5, 0, [4, 5, 6, 7, 8]),  # the older ones are gone: what is kept
    (8, 5, 5, [6, 7, 8]),
    (8, 5, 2, [4, 5, 6, 7, 8]),  # fell behind the kept window: all that is kept
])
def test_since_returns_the_kept_events_after_a_seq(emitted, kept, since, seqs):
    log = log_of(emitted, kept)
    assert [e.seq for e in log.since(since)] == seqs
    assert log.seq == emitted


def test_an_event_carries_what_was_emitted():
    log = EventLog(4)
    log.emit("stopped", "a", "sup", "normal")
    (ev,) = log.since(0)
    assert (ev.kind, ev.name, ev.supervisor, ev.reason, ev.seq) == ("stopped", "a", "sup",
                                                                    "normal", 1)


def test_concurrent_emits_get_consecutive_seqs():
    log = EventLog(10_000)
    threads = [threading.Thread(target=lambda: [log.emit("k", "a", "root") for _ in range(500)])
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [e.seq for e in log.since(0)] == list(range(1, 2001))
