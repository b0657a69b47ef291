"""Agents for the front door's close and failure tests (tests/cluster/test_frontdoor_close.py)."""

from __future__ import annotations

import os
import time
from typing import Any

from beamish.runtime import Agent

GATE_WAIT_S = 60.0


class GatedCall(Agent):
    """A call ``{"wait_for": PATH}`` creates ``PATH + ".entered"``, then holds its handler
    until PATH exists, and answers "done" (so a test knows the call is in flight)."""

    def init(self, args: dict[str, Any]) -> dict[str, Any]:
        return {}

    def handle_call(self, msg: Any, state: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        open(msg["wait_for"] + ".entered", "w").close()
        deadline = time.monotonic() + GATE_WAIT_S
        while not os.path.exists(msg["wait_for"]) and time.monotonic() < deadline:
            time.sleep(0.01)
        return "done", state
