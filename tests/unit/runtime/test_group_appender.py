"""The sender's group commit (messaging/messenger.py `_GroupAppender`): threads of one
process share commits; one leader commits for every waiter, and a leader whose commit
fails (or is interrupted) fails every waiter of its group, none taking it as its ack.

A real temporary LMDB store; the only stand-in is a gate on its ``write`` that holds a
commit open (or makes it fail) so that other threads queue behind it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from beamish.mailbox import pack
from beamish.runtime._types import AgentStatus
from beamish.runtime.errors import AgentNotFound, StoreError
from beamish.runtime.messaging.messenger import _GroupAppender
from beamish.runtime.store.lmdb import Store, Txn
from beamish.runtime.store.records import AgentRecord, Message, Reply
from tests.conftest import wait_until

AGENT_ID = 1


class GatedStore(Store):
    """A real store whose n-th write can be held at a gate, or fail instead of running."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.writes = 0
        self.hold: set[int] = set()  # writes that wait for `gate`
        self.fail: dict[int, BaseException] = {}  # writes that raise this instead
        self.gate = threading.Event()
        self.held = threading.Event()
        self._count = threading.Lock()

    def write(self, fn: Callable[[Txn], Any]) -> Any:
        with self._count:
            self.writes += 1
            n = self.writes
        if n in self.hold:
            self.held.set()
            assert self.gate.wait(10), "the test never opened the gate"
        if n in self.fail:
            raise self.fail[n]
        return super().write(fn)


@pytest.fixture
def store(tmp_path: Any) -> Iterator[GatedStore]:
    store = GatedStore(str(tmp_path / "s"))
    store.write(lambda t: t.put_agent(AgentRecord("a", AGENT_ID, status=AgentStatus.RUNNING)))
    store.write(lambda t: t.put_agent(AgentRecord("gone", 2, status=AgentStatus.STOPPED)))
    store.write(lambda t: t.put_agent(AgentRecord("asleep", 3, status=AgentStatus.SLEEPING)))
    store.writes = 0
    yield store
    store.gate.set()
    store.close()


def message(i: int) -> bytes:
    return pack({"k": "cast", "p": pack(i), "t": 0.0})


def depth(store: Store) -> int:
    return int(store.read(lambda t: t.depth(AGENT_ID)))


class Sender(threading.Thread):
    """One thread's `append`, and what it got."""

    def __init__(self, appender: _GroupAppender, name: str, i: int,
                 taken: list[bytes] | None = None) -> None:
        super().__init__(daemon=True)
        self.appender, self.target, self.i = appender, name, i
        self.taken = taken if taken is not None else []
        self.route: tuple[int, int] | None = None
        self.asleep: bool | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            *route, self.asleep = self.appender.append(self.target, message(self.i),
                                                       self.taken)
            self.route = (route[0], route[1])
        except BaseException as exc:  # noqa: BLE001 - recorded for the test
            self.error = exc


def queued(appender: _GroupAppender, n: int) -> None:
    def enough() -> bool:
        with appender.cond:
            return len(appender.queue) >= n
    wait_until(enough, what=f"{n} senders queued behind the commit")


def behind_a_held_commit(store: GatedStore, appender: _GroupAppender,
                         waiters: int) -> tuple[Sender, list[Sender]]:
    """A first sender whose commit is held open, and ``waiters`` senders queued behind it."""
    store.hold.add(1)
    first = Sender(appender, "a", 0)
    first.start()
    assert store.held.wait(10)
    senders = [Sender(appender, "a", i + 1) for i in range(waiters)]
    for sender in senders:
        sender.start()
    queued(appender, waiters)
    return first, senders


def finish(*senders: Sender) -> None:
    for sender in senders:
        sender.join(10)
        assert not sender.is_alive(), "a sender is stuck"


def test_one_sender_alone_commits_each_message_itself(store: GatedStore) -> None:
    appender = _GroupAppender(store)
    assert [appender.append("a", message(i), []) for i in range(3)] == \
        [(AGENT_ID, 1, False), (AGENT_ID, 2, False), (AGENT_ID, 3, False)]
    assert store.writes == 3


def test_senders_that_queue_during_a_commit_share_the_next_one(store: GatedStore) -> None:
    appender = _GroupAppender(store)
    first, senders = behind_a_held_commit(store, appender, 5)
    store.gate.set()
    finish(first, *senders)
    assert store.writes == 2  # the held commit, then one for all five waiters
    assert first.route == (AGENT_ID, 1)
    assert sorted(s.route for s in senders if s.route) == [(AGENT_ID, n) for n in range(2, 7)]
    assert all(s.error is None for s in senders)
    # Each got the seq its own message was committed at.
    stored = dict(store.read(lambda t: t.peek(AGENT_ID, 10)))
    assert all(stored[s.route[1]] == Message.from_wire({"k": "cast", "p": pack(s.i), "t": 0.0})
               for s in senders if s.route)


def test_a_sender_to_no_live_agent_fails_alone(store: GatedStore) -> None:
    appender = _GroupAppender(store)
    first, senders = behind_a_held_commit(store, appender, 2)
    strays = [Sender(appender, "nobody", 10), Sender(appender, "gone", 11)]
    for stray in strays:
        stray.start()
    queued(appender, 4)
    store.gate.set()
    finish(first, *senders, *strays)
    assert store.writes == 2
    assert [type(s.error) for s in strays] == [AgentNotFound, AgentNotFound]
    assert "it is stopped" in str(strays[1].error)
    assert all(s.error is None and s.route is not None for s in senders)
    assert depth(store) == 3


def test_replies_taken_are_deleted_in_the_senders_commit(store: GatedStore) -> None:
    store.write(lambda t: t.put_reply(b"r1", Reply(True, 0.0, pack(None))))
    appender = _GroupAppender(store)
    with pytest.raises(AgentNotFound):
        appender.append("nobody", message(0), [b"r1"])
    # Deleted all the same: the commit ran, only this message had nowhere to go.
    assert store.read(lambda t: t.pop_reply(b"r1")) is None


def test_a_failed_leader_commit_fails_every_waiter_with_its_own_chained_error(
        store: GatedStore) -> None:
    appender = _GroupAppender(store)
    boom = RuntimeError("disk on fire")
    store.fail[2] = boom  # the commit of the waiters' group
    first, senders = behind_a_held_commit(store, appender, 3)
    store.gate.set()
    finish(first, *senders)
    assert first.error is None and depth(store) == 1  # nothing of the group was committed
    errors = [s.error for s in senders]
    assert sum(e is boom for e in errors) == 1  # the leader: its own commit's error
    copies = [e for e in errors if e is not boom]
    assert len(copies) == 2 and copies[0] is not copies[1]
    for copy in copies:
        assert isinstance(copy, StoreError) and copy.__cause__ is boom
        assert str(copy) == "the commit of this message failed: RuntimeError: disk on fire"
    assert all(s.route is None for s in senders)
    # The appender is not stuck: the next sender commits.
    assert appender.append("a", message(9), []) == (AGENT_ID, 2, False)


def test_an_interrupted_leader_fails_every_waiter_and_leaves_the_appender_usable(
        store: GatedStore) -> None:
    appender = _GroupAppender(store)
    interrupt = KeyboardInterrupt()
    store.fail[2] = interrupt  # a signal handler's exception during the leader's commit
    first, senders = behind_a_held_commit(store, appender, 3)
    store.gate.set()
    finish(first, *senders)
    assert depth(store) == 1
    # No waiter takes the aborted commit as its ack: each raises the interrupt (not an
    # Exception, so it is not wrapped in a StoreError).
    assert all(s.error is interrupt and s.route is None for s in senders)
    assert not appender.committing and appender.queue == []
    assert appender.append("a", message(9), []) == (AGENT_ID, 2, False)


def test_an_append_to_a_sleeping_agent_marks_its_wake_in_the_same_commit(
        store: GatedStore) -> None:
    appender = _GroupAppender(store)
    assert appender.append("a", message(0), []) == (AGENT_ID, 1, False)
    assert appender.append("asleep", message(1), []) == (3, 1, True)
    assert store.writes == 2  # the wake mark went with the append
    assert store.read(lambda t: t.wakes()) == [(3, "asleep")]
