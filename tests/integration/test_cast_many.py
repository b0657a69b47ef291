"""``cast_many``: one commit for a batch of casts to many agents, each agent's messages in
list order, all or nothing; through real agent processes and LMDB."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from beamish.runtime import AgentNotFound, BadMessage, ConfigError, MessageTooLarge
from tests.conftest import wait_until

pytestmark = pytest.mark.slow

RECORDER = "tests.agents.batch_agents:Recorder"


def _spawn(node, *names):  # type: ignore[no-untyped-def]
    return [node.spawn(RECORDER, name=n) for n in names]


def test_each_agent_gets_its_messages_in_list_order(node):
    a, b, c = _spawn(node, "a", "b", "c")
    refs = {"a": a, "b": b, "c": c}
    items = [("abc"[i % 3] if i % 7 else "a", i) for i in range(600)]
    node.cast_many(items)
    b.cast_many([1000, 1001, 1002])
    for name, ref in refs.items():
        expected = [m for n, m in items if n == name] + ([1000, 1001, 1002] if name == "b" else [])
        assert wait_until(lambda ref=ref, e=expected: ref.call("log") == e,
                          what=f"{name}'s messages in list order")


def test_an_unknown_name_sends_nothing_to_any_agent(node):
    a, b = _spawn(node, "a", "b")
    with pytest.raises(AgentNotFound) as err:
        node.cast_many([("a", 1), ("b", 2), ("ghost", 3), ("a", 4)])
    assert err.value.name == "ghost"
    node.stop("b")
    with pytest.raises(AgentNotFound, match="stopped"):
        node.cast_many([("a", 5), ("b", 6)])  # a name that is not live: the same
    assert node.info("a").mailbox_depth == 0
    assert a.call("log") == []
    node.cast_many([("a", 7)])
    assert a.call("log") == [7]


def test_a_bad_item_is_named_and_nothing_is_sent(node):
    (a,) = _spawn(node, "a")
    with pytest.raises(BadMessage, match="cast_many item 2"):
        node.cast_many([("a", 1), ("a", 2), ("a", object())])
    with pytest.raises(MessageTooLarge, match="cast_many item 1"):
        a.cast_many([1, b"x" * (17 * 1024 * 1024)])
    with pytest.raises(ConfigError, match="cast_many item 0"):
        node.cast_many([("not a name!", 1)])
    with pytest.raises(ConfigError, match="item 1 is int"):
        node.cast_many([("a", 1), 2])
    with pytest.raises(ConfigError):
        a.cast_many("abc")
    assert node.info("a").mailbox_depth == 0
    assert a.call("log") == []


def test_an_empty_batch_sends_nothing(node):
    (a,) = _spawn(node, "a")
    node.cast_many([])
    a.cast_many([])
    assert a.call("log") == []


def test_the_asyncio_flavour(node):
    a, b = _spawn(node, "a", "b")

    async def send() -> None:
        await node.acast_many([("a", 1), ("b", 2), ("a", 3)])
        await a.acast_many([4, 5])

    asyncio.run(send())
    assert wait_until(lambda: a.call("log") == [1, 3, 4, 5] and b.call("log") == [2])


def test_a_kill_9_mid_batch_applies_every_acknowledged_message_exactly_once(node):
    a, b = _spawn(node, "a", "b")
    n = 400
    ledger: dict[str, list[int]] = {"a": [], "b": []}
    items = []
    for i in range(n):
        name = "ab"[i % 2]
        items.append((name, {"i": i, "sleep": 0.002}))
        ledger[name].append(i)
    pid = node.info("a").pid
    node.cast_many(items)  # acknowledged: every item is durable from here
    # Kill the agent while it works through its part of the batch: some of it handled
    # and committed, some in an uncommitted group, some still in the mailbox.
    assert wait_until(lambda: node.info("a").mailbox_depth < n // 2 - 20, what="a started")
    depth = node.info("a").mailbox_depth
    os.kill(pid, signal.SIGKILL)
    assert depth > 0, "the kill came after the batch was handled: nothing was tested"
    assert wait_until(lambda: node.info("a").pid not in (None, pid), timeout=30,
                      what="a restarted")
    assert wait_until(lambda: a.call("log", timeout=30) == ledger["a"], timeout=60,
                      what="a's messages, each applied once, in order")
    assert wait_until(lambda: b.call("log", timeout=30) == ledger["b"], timeout=60,
                      what="b's messages, each applied once, in order")
    assert node.info("a").restarts == 1
