"""Agents for the tests of stopping under a backlog (tests/integration/test_stop_backlog.py)."""

from __future__ import annotations

import os
import time
from typing import Any

from beamish.runtime import Agent

MAX_ANOMALIES = 20
SLOW_S = 0.003  # what a message takes while the agent's "slow" file exists


class Sequencer(Agent):
    """Checks that each sender's casts arrive once each, in order: a cast is
    ``[sender, i]`` (``i`` counting from 0 per sender), and so is a call ``[sender, i]``
    (answered with the count); ``"get"`` answers the state. A cast ``{"gate": path}``
    waits until ``path`` exists, and each message takes `SLOW_S` while the file
    ``args["slow"]`` exists (a backlog builds); ``terminate`` appends its reason to the
    file ``args["file"]``."""

    def init(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"n": 0, "next": {}, "anomalies": [], "file": args.get("file"),
                "slow": args.get("slow")}

    def handle_call(self, msg: Any, state: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        if msg == "get":
            return state, state
        if isinstance(msg, list):
            return self.handle_cast(msg, state)["n"], state
        return None, state

    def handle_cast(self, msg: Any, state: dict[str, Any]) -> dict[str, Any]:
        if isinstance(msg, dict):
            while not os.path.exists(msg["gate"]):
                time.sleep(0.01)
            return state
        sender, i = msg
        expected = state["next"].get(sender, 0)
        if i != expected and len(state["anomalies"]) < MAX_ANOMALIES:
            state["anomalies"].append([sender, expected, i])  # lost or applied twice
        state["next"][sender] = i + 1
        state["n"] += 1
        if state["slow"] and os.path.exists(state["slow"]):
            time.sleep(SLOW_S)
        return state

    def terminate(self, reason: str, state: dict[str, Any]) -> None:
        if state.get("file"):
            with open(state["file"], "a") as fh:
                fh.write(reason + "\n")
