"""Agents for the metrics and ``beamish top`` tests (tests/integration/test_metrics.py)."""

from __future__ import annotations

import os
import time
from typing import Any

from beamish.runtime import Agent

GATE_WAIT_S = 60.0


class Gated(Agent):
    """Counts its casts. A cast ``{"wait_for": PATH}`` first creates ``PATH + ".entered"``,
    then holds its handler until the file PATH exists (so the test knows it is busy and
    fills its mailbox meanwhile); ``{"sleep": S}`` takes S seconds; ``{"grow": MB}`` keeps
    that many MiB of touched memory in the process (not in the state)."""

    def init(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"n": 0}

    def handle_call(self, msg: Any, state: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        return state["n"], state

    def handle_cast(self, msg: Any, state: dict[str, Any]) -> dict[str, Any]:
        if isinstance(msg, dict) and "wait_for" in msg:
            open(msg["wait_for"] + ".entered", "w").close()
            deadline = time.monotonic() + GATE_WAIT_S
            while not os.path.exists(msg["wait_for"]) and time.monotonic() < deadline:
                time.sleep(0.01)
        if isinstance(msg, dict) and "sleep" in msg:
            time.sleep(msg["sleep"])
        if isinstance(msg, dict) and "grow" in msg:
            self.__dict__.setdefault("ballast", []).append(bytearray(b"x" * (msg["grow"] << 20)))
        state["n"] += 1
        return state
