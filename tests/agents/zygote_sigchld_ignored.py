"""A module that sets SIGCHLD to ignored when imported (as some libraries do to avoid
zombies): imported into the zygote, it would make the kernel reap agents silently."""

from __future__ import annotations

import os
import signal
from typing import Any

from beamish.runtime import Agent

signal.signal(signal.SIGCHLD, signal.SIG_IGN)


class Quiet(Agent):
    """A counter: ``"get"`` answers the count, ``"pid"`` the process id, else increments."""

    def init(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"n": 0}

    def handle_call(self, msg: Any, state: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        if msg == "get":
            return state["n"], state
        if msg == "pid":
            return os.getpid(), state
        state["n"] += 1
        return state["n"], state
