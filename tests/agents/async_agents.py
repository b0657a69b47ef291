"""Agents for the asyncio client's tests (real processes)."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from beamish.runtime import Agent


class Barrier(Agent):
    """An ``async def`` handler that marks its entry (a file named after the agent in
    ``msg["dir"]``), then waits, awaiting, until ``msg["n"]`` handlers have entered, and
    replies with ``msg["echo"]`` and how many had entered. Every call of a batch returns
    only if all ``n`` handlers were in flight at once: a client that waits for some
    replies before sending the rest never gets any (each handler gives up, raising,
    after ``msg["patience"]`` seconds)."""

    async def handle_call(self, msg: Any, state: Any) -> tuple[Any, Any]:
        with open(os.path.join(msg["dir"], self.ctx.name), "w"):
            pass
        deadline = time.monotonic() + msg.get("patience", 60.0)
        while (entered := len(os.listdir(msg["dir"]))) < msg["n"]:
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {entered} of {msg['n']} handlers were in flight")
            await asyncio.sleep(0.05)
        return {"echo": msg["echo"], "entered": entered}, state
