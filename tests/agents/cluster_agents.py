"""Agents of the cluster tests: a ledger of applied casts, checked exactly."""

from __future__ import annotations

import os
from typing import Any

from beamish.runtime import Agent


class Ledger(Agent):
    """Keeps every cast's id, in order; ``"get"`` answers them, ``"where"`` its pid."""

    def init(self, args: dict[str, Any]) -> Any:
        return {"applied": []}

    def handle_cast(self, msg: Any, state: Any) -> Any:
        state["applied"].append(msg)
        return state

    def handle_call(self, msg: Any, state: Any) -> Any:
        if msg == "where":
            return os.getpid(), state
        if msg == "ping":
            return "pong", state
        return state["applied"], state
