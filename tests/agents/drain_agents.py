"""An agent of the drain tests: a ledger of the casts and calls it applied."""

from __future__ import annotations

import time
from typing import Any

from beamish.runtime import Agent


class CallLedger(Agent):
    """Appends every cast, and every call ``["call", sender, seq]`` (answering its seq);
    ``"get"`` answers what it applied, ``["sleep", s]`` answers after ``s`` seconds."""

    def init(self, args: dict[str, Any]) -> Any:
        return {"applied": []}

    def handle_cast(self, msg: Any, state: Any) -> Any:
        state["applied"].append(msg)
        return state

    def handle_call(self, msg: Any, state: Any) -> Any:
        if msg == "get":
            return state["applied"], state
        if isinstance(msg, list) and msg[0] == "sleep":
            time.sleep(float(msg[1]))
            return "slept", state
        state["applied"].append(msg)
        return msg[2], state
