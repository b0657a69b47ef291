"""Chaos: steady casts and calls to several agents while a loop SIGKILLs random agents and,
twice, the whole node. At the end every acknowledged increment is in the states exactly
once and nothing is left pending."""

from __future__ import annotations

import os
import random
import signal
import threading
import time

import pytest

from beamish.runtime import AgentNotFound, CallTimeout, connect, start_node
from tests.conftest import kill_node, shutdown_quietly, wait_until

pytestmark = pytest.mark.slow
AGENTS = [f"c{i}" for i in range(4)]
DURATION_S = 9.0


def test_chaos_every_acknowledged_message_counts_exactly_once(node_dir, tmp_path):
    cfg = tmp_path / "beamish.toml"
    cfg.write_text("[node]\nmax_restarts = 1000\nmax_seconds = 1\n")
    node = start_node(node_dir, config=str(cfg))
    for name in AGENTS:
        node.spawn("tests.agents.basic:Counter", name=name)
    acked = dict.fromkeys(AGENTS, 0)
    calls = {"ok": 0, "timeout": 0}
    stop = threading.Event()
    # A connection of its own that keeps sending through node restarts: messages go
    # straight to the agents' mailboxes in LMDB, not through the node.
    sender = connect(node_dir)
    errors: list[BaseException] = []

    def load() -> None:
        try:
            send()
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            errors.append(exc)

    def send() -> None:
        rng = random.Random(1)
        while not stop.is_set():
            name = rng.choice(AGENTS)
            sender.cast(name, "incr")  # returns once committed: acknowledged
            acked[name] += 1
            if rng.random() < 0.1:
                try:
                    sender.call(name, "get", timeout=2.0)
                    calls["ok"] += 1
                except CallTimeout:
                    calls["timeout"] += 1  # a read; the agent was down meanwhile

    loader = threading.Thread(target=load)
    loader.start()
    kills = node_kills = 0
    rng = random.Random(2)
    started = time.monotonic()
    try:
        while time.monotonic() - started < DURATION_S:
            time.sleep(0.25)
            elapsed = time.monotonic() - started
            if node_kills < 2 and elapsed > DURATION_S * (node_kills + 1) / 3:
                kill_node(node)  # the node and every agent, at once
                node = start_node(node_dir, config=str(cfg))
                node_kills += 1
                continue
            try:
                pid = node.info(rng.choice(AGENTS)).pid
            except AgentNotFound:
                continue
            if pid:
                os.kill(pid, signal.SIGKILL)
                kills += 1
    finally:
        stop.set()
        loader.join(30)
    try:
        wait_until(lambda: all(node.info(n).mailbox_depth == 0 for n in AGENTS), timeout=60,
                   what="every mailbox to drain")
        counts = {n: node.call(n, "get") for n in AGENTS}
        print(f"chaos: {sum(acked.values())} acknowledged casts, {kills} agent kills, "
              f"{node_kills} node kills, {calls}")
        assert not errors, errors
        assert counts == acked
        assert node_kills == 2 and kills >= 10
    finally:
        shutdown_quietly(node)
        sender.close()
