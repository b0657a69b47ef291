"""Agents for the input-value conformance tests (tests/integration/test_conformance_values.py)."""

from __future__ import annotations

import math
from typing import Any

from beamish.runtime import Agent
from beamish.runtime.errors import BeamishError


class PairKeys(Agent):
    """A counter that can be asked to commit a state (or reply) holding a tuple-keyed dict."""

    def init(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"count": 0}

    def handle_call(self, msg: Any, state: dict[str, Any]) -> tuple[Any, Any]:
        if msg == "incr":
            state = {**state, "count": state["count"] + 1}
            return state["count"], state
        if msg == "bad_state":
            return "committed", {**state, "pairs": {(1, 2): "a"}}
        if msg == "bad_reply":
            return {(1, 2): "a"}, state
        return state, state

    def handle_cast(self, msg: Any, state: dict[str, Any]) -> Any:
        if msg == "bad_state":
            return {**state, "pairs": {frozenset({1}): "a"}}
        if msg == "incr":
            return {**state, "count": state["count"] + 1}
        return state


class Prober(Agent):
    """Tries an operation of ``self.ctx`` with a bad value and replies what it raised."""

    def handle_call(self, msg: Any, state: Any) -> tuple[Any, Any]:
        op = msg["op"]
        try:
            if op == "spawn":
                self.ctx.spawn(msg.get("cls", "tests.agents.basic:Echo"), name=msg.get("name"),
                               args=msg.get("args"))
            elif op == "call":
                self.ctx.call(msg["name"], "hi", timeout=msg.get("timeout", 5.0))
            elif op == "call_nan":
                self.ctx.call(msg["name"], "hi", timeout=math.nan)
            elif op == "cast_pairs":
                self.ctx.cast(msg["name"], {(1, 2): 3})
            elif op == "cast":
                self.ctx.cast(msg["name"], "hi")
            elif op == "monitor":
                self.ctx.monitor(msg["name"])
            elif op == "link":
                self.ctx.link(msg["name"])
        except BeamishError as exc:
            return {"raised": type(exc).__name__, "message": str(exc)}, state
        except Exception as exc:  # noqa: BLE001 - a raw error is what the test looks for
            return {"raised": "raw " + type(exc).__name__, "message": str(exc)}, state
        return {"raised": None}, state
