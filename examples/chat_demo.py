"""The chat agent's walk-through: a conversation that outgrows its context, is compacted by
``recover``, and survives a kill -9 of the agent and of the whole node."""

from __future__ import annotations

import os
import signal
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import psutil  # noqa: E402

from beamish.runtime import start_node  # noqa: E402
from examples.fake_llm import FakeLLM  # noqa: E402


def main() -> int:
    """Run the walk-through; return the exit status."""
    llm = FakeLLM(max_messages=8, fail_every=7)
    base_url = llm.serve()
    node_dir = tempfile.mkdtemp(prefix="bm-chat-", dir="/tmp")
    node = start_node(node_dir)
    try:
        alice = node.spawn("examples.chat_agent:ChatAgent", name="alice",
                           args={"base_url": base_url})
        for i in range(1, 6):
            print(f"user: turn {i}\n  bot: {alice.call(f'turn {i}', timeout=30)}")
        history = alice.call({"op": "history"})
        print(f"== {len(history['messages'])} messages kept, {history['compactions']} "
              f"compaction(s) by recover; {llm.requests} requests (every 7th fails with 503)")
        os.kill(node.info("alice").pid, signal.SIGKILL)
        print("== kill -9 of the agent; next turn:", alice.call("still there?", timeout=30))
        os.kill(node.pid, signal.SIGKILL)  # the node and, with it, every agent
        node.close()
        gone = psutil.Process(node.pid)
        while gone.is_running() and gone.status() != psutil.STATUS_ZOMBIE:
            time.sleep(0.01)
        node = start_node(node_dir)
        history = node.call("alice", {"op": "history"})
        print(f"== kill -9 of the whole node, started again: {len(history['messages'])} "
              f"messages still there; last: {history['messages'][-1]['content']!r}")
    finally:
        node.shutdown()
        llm.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
