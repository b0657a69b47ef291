"""A group commit's messages to one agent go in together (one route lookup, one append of
consecutive seqs, in queue order: `_GroupAppender._commit`); each sender still gets the
seq of its own message, and its own error. A real temporary LMDB store, gated as in
test_group_appender.py."""

from __future__ import annotations

from beamish.mailbox import unpack
from beamish.runtime.errors import AgentNotFound
from beamish.runtime.messaging.messenger import _GroupAppender
from tests.unit.runtime.test_group_appender import (  # noqa: F401  (the fixture)
    AGENT_ID,
    GatedStore,
    Sender,
    finish,
    queued,
    store,
)


def test_each_sender_of_a_mixed_group_gets_its_own_seq_and_its_own_error(
        store: GatedStore) -> None:  # noqa: F811  (the imported fixture)
    appender = _GroupAppender(store)
    store.hold.add(1)
    first = Sender(appender, "a", 0)
    first.start()
    assert store.held.wait(10)
    targets = ["a", "asleep", "gone", "a", "nobody", "asleep", "a", "a"]
    senders = []
    for i, name in enumerate(targets):  # queued one by one: their order is known
        sender = Sender(appender, name, i + 1)
        sender.start()
        queued(appender, i + 1)
        senders.append(sender)
    store.gate.set()
    finish(first, *senders)
    assert store.writes == 2  # the first alone, then the whole group in one commit

    to_a = [s for s in senders if s.target == "a"]
    seqs = [s.route[1] for s in to_a if s.route is not None]
    assert seqs == list(range(seqs[0], seqs[0] + len(to_a)))  # consecutive, queue order
    mailbox = dict(store.read(lambda t: t.peek(AGENT_ID, 100)))
    for s in to_a:
        assert s.route is not None and s.route[0] == AGENT_ID
        assert unpack(mailbox[s.route[1]].payload) == s.i  # its own message at its seq
    asleep = [s for s in senders if s.target == "asleep"]
    assert [s.asleep for s in asleep] == [True, True]
    assert len({s.route for s in asleep}) == 2
    for s in senders:
        if s.target in ("gone", "nobody"):
            assert isinstance(s.error, AgentNotFound) and s.route is None
        else:
            assert s.error is None
