"""Write lanes (store/writegate.py): the pure rule, one row per case, and the gate between
real processes on a real LMDB store: a bulk commit waits while an urgent commit holds the
gate, goes ahead once it is released, once its holder is SIGKILLed, or once it has waited
its limit."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from beamish.mailbox import pack
from beamish.runtime._types import AgentStatus
from beamish.runtime.store.lmdb import Store
from beamish.runtime.store.records import AgentRecord
from beamish.runtime.store.writegate import GateStep, WriteLane, gate_step

AGENT_ID = 1


@pytest.mark.parametrize(("lane", "contended", "step"), [
    (WriteLane.URGENT, True, GateStep.SHARE),
    (WriteLane.BULK, True, GateStep.YIELD),
    (WriteLane.PLAIN, True, GateStep.NONE),
    (WriteLane.URGENT, False, GateStep.NONE),
    (WriteLane.BULK, False, GateStep.NONE),
    (WriteLane.PLAIN, False, GateStep.NONE),
])
def test_gate_step(lane: WriteLane, contended: bool, step: GateStep) -> None:
    assert gate_step(lane, contended) is step


# An urgent commit in another process: it holds the gate (as one waiting for the writer
# lock does), says so, and commits its message when told (a line on stdin).
HOLDER = """
import sys
from beamish.mailbox import pack
from beamish.runtime.store.lmdb import Store
store = Store(sys.argv[1])
store.write_gate.contended_until = float("inf")
store.write_gate.share()
print("holding", flush=True)
sys.stdin.readline()
store.write(lambda t: t.append_packed(1, pack({"k": "cast", "p": pack("urgent"), "t": 0.0})))
store.write_gate.release()
print("released", flush=True)
store.close()
"""


@pytest.fixture
def store(tmp_path: Any) -> Iterator[Store]:
    store = Store(str(tmp_path / "s"))
    store.write(lambda t: t.put_agent(AgentRecord("a", AGENT_ID, status=AgentStatus.RUNNING)))
    yield store
    store.close()


@pytest.fixture
def holder(store: Store) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, store.path], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    try:
        assert proc.stdout.readline().strip() == "holding"
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def contended(store: Store, yield_max_s: float) -> None:
    store.write_gate.contended_until = float("inf")
    store.write_gate.yield_max_s = yield_max_s


def bulk_append(store: Store) -> threading.Thread:
    def run() -> None:
        store.write_in_lane(lambda t: t.append_packed(
            AGENT_ID, pack({"k": "cast", "p": pack("bulk"), "t": 0.0})), WriteLane.BULK)
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def mailbox(store: Store) -> list[Any]:
    from beamish.mailbox import unpack
    return store.read(lambda t: [unpack(t.message_packed(AGENT_ID, seq) or b"")["p"]
                                 for seq in range(1, t.tail(AGENT_ID))])


def test_a_bulk_commit_waits_for_the_urgent_one_holding_the_gate(
        store: Store, holder: subprocess.Popen[str]) -> None:
    contended(store, yield_max_s=60.0)
    bulk = bulk_append(store)
    bulk.join(0.5)
    # Without the lanes the cast was committed at once, ahead of the call: alive is False.
    assert bulk.is_alive(), "the bulk commit went ahead of an urgent one in progress"
    assert holder.stdin is not None and holder.stdout is not None
    holder.stdin.write("go\n")
    holder.stdin.flush()
    assert holder.stdout.readline().strip() == "released"
    bulk.join(30)
    assert not bulk.is_alive()
    assert mailbox(store) == [pack("urgent"), pack("bulk")]


def test_a_sigkilled_holder_does_not_hold_bulk_commits_back(
        store: Store, holder: subprocess.Popen[str]) -> None:
    contended(store, yield_max_s=60.0)
    bulk = bulk_append(store)
    bulk.join(0.3)
    assert bulk.is_alive()
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    bulk.join(30)
    assert not bulk.is_alive()  # the kernel dropped the dead process's lock
    assert mailbox(store) == [pack("bulk")]


def test_a_bulk_commit_goes_ahead_after_its_limit(
        store: Store, holder: subprocess.Popen[str]) -> None:
    contended(store, yield_max_s=0.05)
    started = time.monotonic()
    bulk = bulk_append(store)
    bulk.join(30)
    assert not bulk.is_alive(), "a held gate stopped a bulk commit for good"
    assert time.monotonic() - started >= 0.05  # it did wait first
    assert mailbox(store) == [pack("bulk")]


def test_without_contention_no_commit_looks_at_the_gate(
        store: Store, holder: subprocess.Popen[str]) -> None:
    store.write_gate.contended_until = 0.0
    store.write_gate.yield_max_s = 60.0
    bulk = bulk_append(store)
    bulk.join(30)
    assert not bulk.is_alive()
    assert mailbox(store) == [pack("bulk")]


def test_a_long_wait_for_the_writer_lock_turns_the_lanes_on(store: Store) -> None:
    gate = store.write_gate
    gate.contended_until = 0.0
    gate.saw_wait(0.00001, now=100.0)
    assert gate.contended_until == 0.0
    gate.saw_wait(0.01, now=100.0)
    assert gate.contended_until > 100.0


def test_an_urgent_commit_of_another_thread_holds_bulk_ones_back_too(store: Store) -> None:
    contended(store, yield_max_s=60.0)
    store.write_gate.share()  # this process's own urgent commit, in progress
    try:
        bulk = bulk_append(store)
        bulk.join(0.3)
        assert bulk.is_alive(), "a bulk commit went ahead of its own process's urgent one"
    finally:
        store.write_gate.release()
    bulk.join(30)
    assert not bulk.is_alive()
    assert mailbox(store) == [pack("bulk")]
