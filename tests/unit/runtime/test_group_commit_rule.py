"""The agent's group commit: the pure rule (agent/policy.py commit_before/commit_after),
one test per condition, then the loop's `_Group` and `_inline_batch` on a real store."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

import pytest

from beamish.mailbox import pack
from beamish.runtime.agent.loop import AgentLoop, _Group
from beamish.runtime.agent.policy import (
    BATCH,
    GROUP_WINDOW_S,
    CommitReason,
    commit_after,
    commit_before,
)
from beamish.runtime.messaging.wire import Ring
from beamish.runtime.store.lmdb import Store
from beamish.runtime.store.records import Boot, Malformed, Message, NodeFields

YOUNG = GROUP_WINDOW_S / 2


# ---- the rule ----------------------------------------------------------------------------


def test_an_empty_group_is_never_committed() -> None:
    assert commit_before(0, False, 10.0, 5, attempted=5) is None


def test_a_young_small_group_of_casts_grows() -> None:
    assert commit_before(3, False, YOUNG, 5, attempted=None) is None


def test_a_group_holding_a_reply_is_committed_before_the_next_handler() -> None:
    assert commit_before(1, True, 0.0, 5, attempted=None) is CommitReason.REPLY


def test_a_group_of_batch_messages_is_committed() -> None:
    assert commit_before(BATCH - 1, False, YOUNG, 5, attempted=None) is None
    assert commit_before(BATCH, False, YOUNG, 5, attempted=None) is CommitReason.FULL


def test_a_group_is_committed_once_its_first_handler_began_the_window_ago() -> None:
    assert commit_before(1, False, GROUP_WINDOW_S, 5, attempted=None) is CommitReason.OLD


def test_a_message_that_failed_before_is_committed_alone() -> None:
    assert commit_before(1, False, YOUNG, 5, attempted=5) is CommitReason.RETRIED
    assert commit_before(1, False, YOUNG, 6, attempted=5) is None
    assert commit_after(5, attempted=5)
    assert not commit_after(6, attempted=5) and not commit_after(6, attempted=None)


@pytest.mark.parametrize(("size", "reply", "age", "seq", "reason"), [
    (BATCH, True, 1.0, 5, CommitReason.REPLY),
    (BATCH, False, 1.0, 5, CommitReason.RETRIED),
    (BATCH, False, 1.0, 6, CommitReason.FULL),
])
def test_the_first_reason_that_applies_is_given(size: int, reply: bool, age: float, seq: int,
                                                reason: CommitReason) -> None:
    assert commit_before(size, reply, age, seq, attempted=5) is reason


# ---- _Group ------------------------------------------------------------------------------


def test_a_group_keeps_each_removal_and_the_last_state() -> None:
    group = _Group()
    group.add(4, b"s4", 10, started=100.0)
    group.add(5, b"s5", 11, started=100.5)
    assert (group.removals, group.packed_state, group.processed) == ([4, 5], b"s5", 11)
    assert group.started == 100.0  # its age counts from the first handler's start


def test_a_group_is_due_by_the_rule_and_the_clock() -> None:
    group = _Group()
    assert not group.due_before(1, attempted=1)  # empty
    group.add(1, b"s", 1, started=time.monotonic())
    assert not group.due_before(2, attempted=None)
    assert group.due_before(2, attempted=2)
    group.replies.append((b"id", b"reply", "caller"))
    assert group.due_before(2, attempted=None)
    old = _Group()
    old.add(1, b"s", 1, started=time.monotonic() - 10 * GROUP_WINDOW_S)
    assert old.due_before(2, attempted=None)


# ---- _inline_batch: the messages a ring carried, checked against the mailbox ---------------


@pytest.fixture
def loop(tmp_path: Any) -> Any:
    store = Store(str(tmp_path / "store"))
    node = NodeFields(str(tmp_path / "node"), str(tmp_path / "store"), "process",
                      16 * 1024 * 1024)
    agent = AgentLoop(Boot(node, 1, "a", "tests.agents.basic:Counter", {}, 1))
    agent.store = store
    agent.inbox = SimpleNamespace(dropped=0)  # type: ignore[assignment]  # only its count
    yield agent
    store.close()


def cast(i: int) -> bytes:
    """A cast's packed wire form, as a ring carries it inline."""
    return Message("cast", bytes([i]), 1.0).packed()


def rec(i: int) -> Message | Malformed:
    """The same cast as the record the batch hands to the loop."""
    return Message.from_packed(cast(i))


def appended(loop: Any, *messages: bytes) -> list[int]:
    seqs: list[int] = loop.store.write(
        lambda t: [t.append_packed(loop.id, m) for m in messages])
    return seqs


def test_a_ring_whose_bytes_differ_from_the_stored_ones_is_not_trusted(loop: Any) -> None:
    # The same message packed otherwise (a float time as an int) is not what is stored.
    seqs = appended(loop, cast(1))
    loop.next_seq = seqs[0]
    assert loop._inline_batch([Ring(seqs[0], pack({"k": "cast", "p": b"\x01", "t": 1}))]) \
        is None
    assert loop.inbox.dropped == 1


def test_rings_for_the_next_messages_are_the_batch(loop: Any) -> None:
    seqs = appended(loop, cast(1), cast(2))
    loop.next_seq = seqs[0]
    assert loop._inline_batch([Ring(seqs[0], cast(1)), Ring(seqs[1], cast(2))]) == \
        [(seqs[0], rec(1)), (seqs[1], rec(2))]


def test_rings_for_handled_messages_are_passed_over(loop: Any) -> None:
    seqs = appended(loop, cast(1), cast(2))
    loop.next_seq = seqs[1]
    assert loop._inline_batch([Ring(seqs[0], cast(1)), Ring(seqs[1], cast(2))]) == [(seqs[1], rec(2))]
    assert loop._inline_batch([Ring(seqs[0], cast(1))]) is None


def test_without_a_known_head_or_rings_the_mailbox_is_read(loop: Any) -> None:
    seqs = appended(loop, cast(1))
    assert loop._inline_batch([Ring(seqs[0], cast(1))]) is None  # next_seq unknown
    loop.next_seq = seqs[0]
    assert loop._inline_batch([]) is None


def test_a_gap_means_a_ring_was_dropped_and_the_mailbox_is_read(loop: Any) -> None:
    seqs = appended(loop, cast(1), cast(2), cast(3))
    loop.next_seq = seqs[0]
    assert loop._inline_batch([Ring(seqs[0], cast(1)), Ring(seqs[2], cast(3))]) is None
    assert loop.inbox.dropped == 0


def test_a_message_too_big_to_inline_means_the_mailbox_is_read(loop: Any) -> None:
    seqs = appended(loop, cast(1))
    loop.next_seq = seqs[0]
    assert loop._inline_batch([Ring(seqs[0], b"")]) is None


def test_a_ring_for_a_message_the_mailbox_does_not_hold_is_dropped_and_counted(
        loop: Any) -> None:
    seqs = appended(loop, cast(1))
    loop.next_seq = seqs[0]
    assert loop._inline_batch([Ring(seqs[0], cast(9))]) is None  # forged: not what is stored
    assert loop._inline_batch([Ring(seqs[0] + 1, cast(2))]) is None  # not there at all: a gap
    loop.next_seq = seqs[0] + 1
    assert loop._inline_batch([Ring(seqs[0] + 1, cast(2))]) is None  # not appended
    assert loop.inbox.dropped == 2
