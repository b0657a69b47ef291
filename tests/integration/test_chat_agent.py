"""The chat agent example against the fake LLM server on loopback: the conversation
outgrows the context, recover compacts it and the caller never notices; a transient 503 is
retried; the conversation survives kill -9 of the agent and of the whole node."""

from __future__ import annotations

import os
import signal

import pytest

from beamish.runtime import start_node
from examples.fake_llm import FakeLLM
from tests.conftest import kill_node, shutdown_quietly

pytestmark = pytest.mark.slow


def test_chat_agent_compacts_retries_and_survives(node_dir):
    llm = FakeLLM(max_messages=8, fail_every=7)
    base_url = llm.serve()
    try:
        _run(llm, base_url, node_dir)
    finally:
        llm.close()


def _run(llm, base_url, node_dir):  # noqa: ANN001
    node = start_node(node_dir)
    try:
        alice = node.spawn("examples.chat_agent:ChatAgent", name="alice",
                           args={"base_url": base_url})
        replies = [alice.call(f"turn {i}", timeout=30) for i in range(1, 6)]
        assert all(r.startswith("You said 'turn") for r in replies)
        history = alice.call({"op": "history"})
        assert history["compactions"] == 1  # turn 5 hit the context limit
        assert any(m["content"].startswith("Earlier: Summary:") for m in history["messages"])
        failures = [e for e in node.events() if e.kind == "exited" and e.name == "alice"]
        assert len(failures) == 2  # ContextTooLong, then the 503 on the retry
        os.kill(node.info("alice").pid, signal.SIGKILL)
        assert "still there" in alice.call("still there?", timeout=30)
        kept = alice.call({"op": "history"})["messages"]
    finally:
        kill_node(node)
    node = start_node(node_dir)
    try:
        assert node.call("alice", {"op": "history"})["messages"] == kept
    finally:
        shutdown_quietly(node)
