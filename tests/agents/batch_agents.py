"""Agents for the ``cast_many`` tests."""

from __future__ import annotations

import time
from typing import Any

from beamish.runtime import Agent


class Recorder(Agent):
    """Keeps every cast it handled, in order: ``"log"`` answers the list; a cast
    ``{"i": n, "sleep": s}`` sleeps ``s`` seconds before it is recorded."""

    def init(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"log": []}

    def handle_call(self, msg: Any, state: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        return state["log"], state

    def handle_cast(self, msg: Any, state: dict[str, Any]) -> dict[str, Any]:
        if isinstance(msg, dict) and msg.get("sleep"):
            time.sleep(msg["sleep"])
        state["log"].append(msg["i"] if isinstance(msg, dict) else msg)
        return state
