"""Agents for tests/integration/test_sessions_rules.py."""

from __future__ import annotations

from typing import Any

from beamish.runtime import Failure, Skip
from tests.agents.session_agents import Session


class Crasher(Session):
    """`Session` whose ``recover`` gives up on the message that crashed it (``Skip``):
    each ``{"op": "crash"}`` call is one crash, not one per attempt."""

    def recover(self, failure: Failure, state: Any) -> Skip:
        if state is None:
            state = {"log": [], "inits": 0, "recovers": 0, "args": {}}
        state["recovers"] += 1
        return Skip(state)
