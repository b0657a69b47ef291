"""Test agents that report on their own process (what an agent's start left in it)."""

from __future__ import annotations

import sys
from typing import Any

from beamish.runtime import Agent


class Modules(Agent):
    """``"modules"`` answers the names of the modules loaded in this agent's process."""

    def init(self, args: dict[str, Any]) -> dict[str, Any]:
        return {}

    def handle_call(self, msg: Any, state: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        return sorted(sys.modules), state
