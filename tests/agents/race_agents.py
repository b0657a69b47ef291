"""Agents for the sessions race tests (tests/integration/test_sessions_races.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Any

from tests.agents.session_agents import Session


class Watcher(Session):
    """A `Session` that can monitor (or link to) an agent over and over for a while: a
    call ``{"op": "monitor_for", "target", "seconds"}`` issues ``ctx.monitor(target)``
    in a loop for that long (``"link_for"``: ``ctx.link``) and returns how many it
    issued; what it hears is in its ledger (``state["log"]``)."""

    def handle_call(self, msg: dict[str, Any], state: dict[str, Any]) -> tuple[Any, Any]:
        op = msg["op"]
        if op in ("monitor_for", "link_for"):
            watch = self.ctx.monitor if op == "monitor_for" else self.ctx.link
            n, end = 0, time.monotonic() + msg["seconds"]
            while time.monotonic() < end:
                watch(msg["target"])
                n += 1
            return n, state
        return super().handle_call(msg, state)


class Slow(Session):
    """A `Session` whose cast ``{"v", "slow"}`` takes ``slow`` seconds (appending ``v``
    to the file ``args["handling"]`` as it begins) before it is logged; other casts are
    logged at once."""

    def handle_cast(self, msg: Any, state: dict[str, Any]) -> dict[str, Any]:
        if isinstance(msg, dict) and "slow" in msg:
            with open(state["args"]["handling"], "a") as fh:
                fh.write(f"{msg['v']}\n")
            time.sleep(msg["slow"])
            msg = msg["v"]
        return super().handle_cast(msg, state)


class SelfStopper(Session):
    """Stops itself from its ``init`` with ``beamish stop NAME`` on its node
    (``args["dir"]``): the command's answer would come only once it is stopped."""

    def init(self, args: dict[str, Any]) -> dict[str, Any]:
        with open(args["pidfile"], "w") as fh:
            fh.write(str(os.getpid()))
        subprocess.run([sys.executable, "-m", "beamish.runtime", "stop", self.ctx.name,
                        "--dir", args["dir"]], capture_output=True, timeout=300)
        return super().init(args)
