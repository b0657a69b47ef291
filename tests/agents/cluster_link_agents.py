"""Agents of the cross-node monitor and link tests (tests/cluster/test_cross_node_links.py)."""

from __future__ import annotations

import os
from typing import Any

from beamish.runtime import Agent, Stop


class RemoteWatcher(Agent):
    """Monitors or links agents of any node on command (``["monitor", name, node]``,
    ``["link", name, node]``); keeps every Down/Exit it receives (``"seen"``);
    ``"crash"`` (a call or a cast) kills its process, ``"stop-normal"`` stops it normally."""

    def init(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"seen": []}

    def handle_call(self, msg: Any, state: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        if msg == "seen":
            return state["seen"], state
        if msg == "pid":
            return os.getpid(), state
        if msg == "crash":
            os._exit(3)
        if msg == "stop-normal":
            return Stop("normal", reply="bye")
        op, name, node = msg
        getattr(self.ctx, op)(name, node=node)
        return "ok", state

    def handle_cast(self, msg: Any, state: dict[str, Any]) -> dict[str, Any]:
        if msg == "crash":
            os._exit(3)
        return state

    def handle_info(self, msg: Any, state: dict[str, Any]) -> dict[str, Any]:
        state["seen"].append([type(msg).__name__, msg.name, msg.reason])
        return state


class TrappingRemoteWatcher(RemoteWatcher):
    """A RemoteWatcher that traps exits: linked exits arrive as Exit messages."""

    trap_exits = True
