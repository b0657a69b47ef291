"""Stopping an agent that has a backlog: a stop, a sleep, an upgrade's move or a node
shutdown takes effect between two of its messages, ahead of the doorbells queued for the
rest (which stay in its mailbox for its next process), so it stops orderly well within
its shutdown time rather than being killed after it. A ledger checks every acknowledged
message is applied exactly once across the stop."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from beamish.runtime import AgentNotFound, Node, connect, start_node
from tests.conftest import shutdown_quietly, wait_until

pytestmark = pytest.mark.slow

SEQUENCER = "tests.agents.backlog_agents:Sequencer"
CASTS = 20_000
# Each message takes 3 ms while the backlog builds: the batch of doorbells the agent has
# read (a thousand or more) would take it seconds, far past this shutdown time.
SHUTDOWN_S = 1.0


class Sender:
    """A thread that casts ``[sender, 0..CASTS)`` to ``name`` unthrottled, from its own
    client (kept open until `close`, so its queued doorbells stay deliverable), counting
    the acknowledged casts; it ends at `halt` or when the agent is stopped."""

    def __init__(self, node_dir: str, name: str, sender: str = "x") -> None:
        self.client = connect(node_dir)
        self.name, self.sender = name, sender
        self.acked = 0
        self.errors: list[BaseException] = []
        self.halted = threading.Event()
        self.thread = threading.Thread(target=self._run)
        self.thread.start()

    def _run(self) -> None:
        try:
            for i in range(CASTS):
                if self.halted.is_set():
                    return
                self.client.cast(self.name, [self.sender, i])  # returns once durable
                self.acked = i + 1
        except AgentNotFound:
            pass  # stopped: the rest is not sent (and not acknowledged)
        except BaseException as exc:  # noqa: BLE001 - every other failure is the test's
            self.errors.append(exc)

    def halt(self) -> None:
        self.halted.set()
        self.thread.join(60)
        assert not self.thread.is_alive()

    def close(self) -> None:
        self.halt()
        self.client.close()


def _backlog(node: Node, sender: Sender, gate: Path) -> None:
    """Let the agent (held at a gate) work through a backlog of a few thousand casts: it
    reads a thousand or more of their doorbells at once, then handles them (past its
    first read of the mailbox: up to 64 messages)."""
    wait_until(lambda: sender.acked >= 3000, timeout=60, what="a backlog")
    gate.touch()
    wait_until(lambda: sender.acked + 1 - node.info(sender.name).mailbox_depth >= 100,
               timeout=60, what="the agent to work through its backlog")


def _terminated(path: Path) -> list[str]:
    """The reasons the agent's ``terminate`` saw (none if it was killed)."""
    return path.read_text().split() if path.exists() else []


def _killed(node: Node, name: str) -> list[str]:
    return [e.reason for e in node.events() if e.kind == "killed" and e.name == name]


def _applied_exactly_once(node: Node, name: str, acked: int | dict[str, int]) -> None:
    """Check the agent applied each sender's acknowledged messages once each, in order."""
    expected = {k: n for k, n in acked.items() if n} if isinstance(acked, dict) \
        else {"x": acked}
    total = sum(expected.values())
    state = wait_until(lambda: (lambda s: s if s["n"] >= total else None)(
        node.call(name, "get", timeout=30)), timeout=120, what="every message applied")
    assert state["anomalies"] == [] and state["next"] == expected and state["n"] == total


@pytest.mark.parametrize("how", ["stop", "sleep"])
def test_an_agent_with_a_backlog_stops_between_two_messages(node, tmp_path, how):
    slow, term = tmp_path / "slow", tmp_path / "terminate"
    slow.touch()
    args = {"file": str(term), "slow": str(slow)}
    node.spawn(SEQUENCER, args, name="s", shutdown=SHUTDOWN_S)
    node.cast("s", {"gate": str(tmp_path / "gate")})
    sender = Sender(node.dir, "s")
    try:
        _backlog(node, sender, tmp_path / "gate")
        getattr(node, how)("s")
    finally:
        sender.close()
    assert sender.errors == []
    # Orderly: its terminate ran, and it was not killed at its shutdown time.
    assert _terminated(term) == ["normal" if how == "stop" else "sleep"]
    assert _killed(node, "s") == []
    assert node.info("s").mailbox_depth > 0  # the rest waits for its next process
    slow.unlink()
    if how == "stop":
        node.spawn(SEQUENCER, args, name="s", shutdown=SHUTDOWN_S)  # resumes its state
    _applied_exactly_once(node, "s", sender.acked)


def test_a_node_shutdown_stops_an_agent_with_a_backlog_between_two_messages(
        node_dir, tmp_path: Path):
    slow, term = tmp_path / "slow", tmp_path / "terminate"
    slow.touch()
    node = start_node(node_dir)
    try:
        node.spawn(SEQUENCER, {"file": str(term), "slow": str(slow)}, name="s",
                   shutdown=SHUTDOWN_S)
        node.cast("s", {"gate": str(tmp_path / "gate")})
        sender = Sender(node.dir, "s")
        try:
            _backlog(node, sender, tmp_path / "gate")
            sender.halt()  # the rest of its doorbells still queued
            node.shutdown(timeout=60)
        finally:
            sender.close()
    except BaseException:
        shutdown_quietly(node)
        raise
    assert sender.errors == []
    assert _terminated(term) == ["shutdown"]
    slow.unlink()
    node = start_node(node_dir)  # its agents come back, each from its committed state
    try:
        assert _killed(node, "s") == []  # the events of the node before (persisted)
        _applied_exactly_once(node, "s", sender.acked)
    finally:
        shutdown_quietly(node)


def test_a_rolling_upgrade_moves_agents_with_a_backlog_between_two_messages(node, tmp_path):
    names = ["u1", "u2"]
    slow = tmp_path / "slow"
    slow.touch()
    for name in names:
        node.spawn(SEQUENCER, {"file": str(tmp_path / name), "slow": str(slow)}, name=name,
                   shutdown=SHUTDOWN_S)
        node.cast(name, {"gate": str(tmp_path / "gate")})
    senders = [Sender(node.dir, name) for name in names]
    calls = {name: 0 for name in names}
    errors: list[BaseException] = []
    done = threading.Event()

    def caller(name: str) -> None:
        # Its calls wait behind the backlog (seconds of it, hence the timeout): callers
        # wait through the moves, none fails.
        client = connect(node.dir)
        try:
            while not done.is_set():
                client.call(name, ["y", calls[name]], timeout=120)
                calls[name] += 1
        except BaseException as exc:  # noqa: BLE001 - every failure is the test's
            errors.append(exc)
        finally:
            client.close()
    callers = [threading.Thread(target=caller, args=(name,)) for name in names]
    try:
        wait_until(lambda: min(s.acked for s in senders) >= 3000, timeout=60,
                   what="a backlog")
        for thread in callers:  # their first calls wait behind the backlog
            thread.start()
        (tmp_path / "gate").touch()
        wait_until(lambda: all(s.acked + 1 - node.info(s.name).mailbox_depth >= 100
                               for s in senders), timeout=60, what="the agents to work")
        report = node.upgrade()
    finally:
        slow.unlink()
        done.set()
        for sender in senders:
            sender.close()
        for thread in callers:
            if thread.ident is not None:
                thread.join(240)
    assert errors == [] and all(s.errors == [] for s in senders)
    assert all(calls.values())
    assert [m.name for m in report.moved] == names
    for name in names:
        assert _terminated(tmp_path / name) == ["upgrade"]  # orderly, not killed
        assert _killed(node, name) == []
    for name, sender in zip(names, senders, strict=True):
        _applied_exactly_once(node, name, {"x": sender.acked, "y": calls[name]})
