"""The chat example's sessions: registered lazily per user (no process until the first
message), asleep after their idle_timeout, woken by the user's next message with the
conversation kept; a user who never writes never costs a process."""

from __future__ import annotations

import pytest

from beamish.runtime import start_node
from examples.chat_agent import register_user, session_name
from examples.fake_llm import FakeLLM
from tests.conftest import shutdown_quietly, wait_until

pytestmark = pytest.mark.slow

USERS = ("alice", "bob", "carol")


def test_chat_sessions_sleep_when_idle_and_wake_with_their_conversation(node_dir):
    llm = FakeLLM(max_messages=50)
    base_url = llm.serve()
    node = start_node(node_dir)
    try:
        node.add_supervisor("sessions")
        for user in USERS:
            register_user(node, user, base_url, idle_timeout=0.5)
        assert {u: (node.info(session_name(u)).status, node.info(session_name(u)).pid)
                for u in USERS} == {u: ("sleeping", None) for u in USERS}
        alice = session_name("alice")
        assert "'hi'" in node.call(alice, "hi", timeout=30)
        wait_until(lambda: node.info(alice).status == "sleeping", 10, "alice asleep")
        assert node.info(alice).pid is None
        assert "'again'" in node.call(alice, "again", timeout=30)  # wakes her session
        history = node.call(alice, {"op": "history"}, timeout=30)
        assert [m["content"] for m in history["messages"] if m["role"] == "user"] == \
            ["hi", "again"]
        kinds = [e.kind for e in node.events() if e.name == alice]
        assert "slept" in kinds and "woke" in kinds
        assert "exited" not in kinds and "restarted" not in kinds  # sleep is not an exit
        for user in ("bob", "carol"):  # never written to: never a process
            assert node.info(session_name(user)).status == "sleeping"
    finally:
        shutdown_quietly(node)
        llm.close()
