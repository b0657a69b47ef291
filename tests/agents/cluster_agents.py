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


class Flaky(Ledger):
    """A `Ledger` that crashes on some casts: ``"die"`` exits the process at once
    (``os._exit``) every time; ``"bad"`` raises until a ``"fix"`` cast came before it."""

    max_attempts = 100  # "die" crashes it on each try: its restart intensity ends it

    def handle_cast(self, msg: Any, state: Any) -> Any:
        if msg == "die":
            os._exit(3)
        if msg == "fix":
            state["fixed"] = True
        elif msg == "bad" and not state.get("fixed"):
            raise ValueError("bad message")
        return super().handle_cast(msg, state)


class Careful(Flaky):
    """A `Flaky` that gives a failing message up after three tries (dead letters)."""

    max_attempts = 3


class Alarm(Ledger):
    """A `Ledger` with durable timers: call ``["after", seconds, tag]`` sets one (answers
    its id), ``["cancel", id]`` cancels one; a fired timer's tag is applied like a cast."""

    def handle_call(self, msg: Any, state: Any) -> Any:
        if isinstance(msg, list) and msg[0] == "after":
            return self.ctx.send_after(msg[1], msg[2]), state
        if isinstance(msg, list) and msg[0] == "cancel":
            return self.ctx.cancel_timer(msg[1]), state
        return super().handle_call(msg, state)

    def handle_info(self, msg: Any, state: Any) -> Any:
        state["applied"].append(msg)
        return state
