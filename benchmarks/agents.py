"""The agents the benchmarks run, on beamish and on the threads runtime alike.

They are named by import path; the paths are computed from ``__name__`` so they work
both from a checkout (``benchmarks.agents``) and from the installed package
(``beamish.benchmarks.agents``).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from beamish.runtime import Agent


class Echo(Agent):
    """Replies with the message it got; ``"pid"`` answers its process id."""

    def handle_call(self, msg: Any, state: Any) -> tuple[Any, Any]:
        if msg == "pid":
            return os.getpid(), state
        return msg, state


class AsyncEcho(Agent):
    """`Echo` with an ``async def`` handler (it awaits nothing that sleeps)."""

    async def handle_call(self, msg: Any, state: Any) -> tuple[Any, Any]:
        await asyncio.sleep(0)
        return msg, state


class Counter(Agent):
    """Counts the casts it handled; the call ``"count"`` answers the count, ``"pid"`` its
    process id."""

    def init(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"n": 0}

    def handle_call(self, msg: Any, state: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        if msg == "pid":
            return os.getpid(), state
        return state["n"], state

    def handle_cast(self, msg: Any, state: dict[str, Any]) -> dict[str, Any]:
        state["n"] += 1
        return state


class Flaky(Agent):
    """Raises on the call ``"raise"`` (let it crash); anything else is counted."""

    def init(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"n": 0}

    def handle_call(self, msg: Any, state: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        if msg == "raise":
            raise ValueError("boom")
        if msg == "count":
            return state["n"], state
        state["n"] += 1
        return state["n"], state


ECHO = f"{__name__}:Echo"
ASYNC_ECHO = f"{__name__}:AsyncEcho"
COUNTER = f"{__name__}:Counter"
FLAKY = f"{__name__}:Flaky"
