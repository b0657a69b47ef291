"""The agents of the README and the demo."""

from __future__ import annotations

from typing import Any

from beamish.runtime import Agent


class Counter(Agent):
    """Counts. ``"get"`` answers the count; anything else adds one and answers the new count."""

    def init(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"n": args.get("start", 0)}

    def handle_call(self, msg: Any, state: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if msg == "get":
            return state["n"], state
        state["n"] += 1
        return state["n"], state

    def handle_cast(self, msg: Any, state: dict[str, Any]) -> dict[str, Any]:
        state["n"] += 1
        return state


class Faulty(Agent):
    """Counts like `Counter`, and crashes on command: "raise", "exit" (os._exit(3)) or
    "segv" (a NULL read in C)."""

    def init(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"n": 0}

    def handle_call(self, msg: Any, state: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        import ctypes
        import os
        if msg == "raise":
            raise ValueError("this message is poison")
        if msg == "exit":
            os._exit(3)
        if msg == "segv":
            ctypes.string_at(0)
        if msg != "get":
            state["n"] += 1
        return state["n"], state
