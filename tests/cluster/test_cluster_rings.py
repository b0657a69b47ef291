"""The node's ring sender (`node/cluster_rings.RingSender`): rings to other nodes' agents
leave on one thread, coalesced, through a real PostgreSQL's LISTEN/NOTIFY; a ring that
cannot be sent is dropped with a warning and the thread goes on."""

from __future__ import annotations

import logging
import threading

import pytest

from beamish.runtime.node.cluster_rings import RingSender
from beamish.runtime.store.postgres.ring import PgRinger, PgRingListener
from tests.conftest import wait_until


def test_rings_queued_while_none_is_sent_go_in_one_batch_each_name_once(pg_dsn: str):
    heard: list[str | None] = []
    lock = threading.Lock()

    def on_ring(name: str | None) -> None:
        with lock:
            heard.append(name)
    listener = PgRingListener(pg_dsn, "c1", on_ring)
    other = PgRingListener(pg_dsn, "c2", on_ring)  # another cluster's: hears nothing
    listener.start()
    other.start()
    ringer = PgRinger(pg_dsn, "c1")
    sender = RingSender(ringer.ring_many)
    try:
        wait_until(lambda: heard.count(None) == 2, what="both listeners connected")
        names = [f"a{i}" for i in range(20)]
        for _ in range(25):  # before the thread runs: all pending at once
            for n in names:
                sender.ring(n)
        sender.start()
        wait_until(lambda: sorted(h for h in heard if h) == sorted(names),
                   what="every name heard")
        assert sender.batches == 1
        sender.ring("late")
        wait_until(lambda: "late" in heard, what="a later ring")
        assert sender.batches == 2
    finally:
        sender.close()
        ringer.close()
        listener.stop()
        other.stop()
    assert [h for h in heard if h] == [*names, "late"]  # once each, in order


def test_a_ring_that_cannot_be_sent_is_dropped_and_the_sender_goes_on(
        caplog: pytest.LogCaptureFixture):
    # Nothing listens on port 1: a real connection failure (StoreUnavailable).
    ringer = PgRinger("postgresql://postgres@127.0.0.1:1/none?connect_timeout=2", "c1")
    sender = RingSender(ringer.ring_many)
    sender.start()
    try:
        with caplog.at_level(logging.WARNING, logger="beamish.cluster"):
            sender.ring("a")
            wait_until(lambda: sender.batches == 1 and "not sent" in caplog.text,
                       what="the first batch tried")
            sender.ring("b")
            wait_until(lambda: sender.batches == 2 and caplog.text.count("not sent") == 2,
                       what="the sender went on")
    finally:
        sender.close()
        ringer.close()
