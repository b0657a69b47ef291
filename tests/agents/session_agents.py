"""Agents for the sleeping-agent tests (tests/integration/test_sessions.py)."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

from beamish.runtime import Agent, Down, Exit, Failure, Resume


class Session(Agent):
    """Keeps a ledger of what it handled (``state["log"]``) and counts its ``init`` and
    ``recover`` runs; ``terminate`` appends its reason to the file ``args["terminated"]``
    (if given), since what terminate does is not committed, after sleeping
    ``args["slow_terminate"]`` seconds (having created the file ``args["terminating"]``),
    then takes ``args["slow_sleep"]`` more seconds if the reason is "sleep". A call
    ``{"op": "crash"}``
    raises; ``{"op": "die"}`` kills its process."""

    def init(self, args: dict[str, Any]) -> dict[str, Any]:
        if args.get("init_fails") and not os.path.exists(args["init_fails"]):
            open(args["init_fails"], "w").close()
            raise RuntimeError("init fails once")
        if args.get("pidfile"):
            with open(args["pidfile"], "w") as fh:
                fh.write(str(os.getpid()))
        if args.get("slow_init"):
            time.sleep(args["slow_init"])
        return {"log": [], "inits": 1, "recovers": 0, "args": args}

    def handle_call(self, msg: dict[str, Any], state: dict[str, Any]) -> tuple[Any, Any]:
        op = msg["op"]
        if op == "get":
            return state, state
        if op == "add":
            state["log"].append(msg["v"])
            return len(state["log"]), state
        if op == "pid":
            return os.getpid(), state
        if op == "timer":
            return self.ctx.send_after(msg["after"], msg["tag"]), state
        if op == "monitor":
            self.ctx.monitor(msg["target"])
            return True, state
        if op == "link":
            self.ctx.link(msg["target"])
            return True, state
        if op == "spawn":
            return self.ctx.spawn(msg["cls"], name=msg["name"], lazy=True,
                                  idle_timeout=msg.get("idle_timeout")), state
        if op == "crash":
            raise RuntimeError("crash on request")
        if op == "die":
            os.kill(os.getpid(), signal.SIGKILL)
        raise ValueError(f"unknown op {op!r}")

    def handle_cast(self, msg: Any, state: dict[str, Any]) -> dict[str, Any]:
        state["log"].append(msg)
        return state

    def handle_info(self, msg: Any, state: dict[str, Any]) -> dict[str, Any]:
        if isinstance(msg, (Down, Exit)):
            state["log"].append([type(msg).__name__, msg.name, msg.reason])
        else:
            state["log"].append(["info", msg])
        return state

    def recover(self, failure: Failure, state: Any) -> Resume:
        if state is None:
            state = {"log": [], "inits": 0, "recovers": 0, "args": {}}
        state["recovers"] += 1
        return Resume(state)

    def terminate(self, reason: str, state: Any) -> None:
        slow = (state or {}).get("args", {}).get("slow_terminate")
        if slow:
            open(state["args"]["terminating"], "w").close()
            time.sleep(slow)
        path = (state or {}).get("args", {}).get("terminated")
        if path:
            with open(path, "a") as fh:
                fh.write(reason + "\n")
        slow = (state or {}).get("args", {}).get("slow_sleep")
        if reason == "sleep" and slow:
            time.sleep(slow)


class SlowStart(Session):
    """A `Session` whose every process start (a spawn, a wake, a restart) writes its pid
    to the file named by ``$BEAMISH_TEST_START_PIDFILE`` and then takes
    ``$BEAMISH_TEST_START_SLOW`` seconds before it loads its state: a wake of an agent
    that has state runs no ``init``, so the constructor is where a test can catch it."""

    def __init__(self) -> None:
        super().__init__()
        pidfile = os.environ.get("BEAMISH_TEST_START_PIDFILE")
        if pidfile:
            with open(pidfile, "w") as fh:
                fh.write(str(os.getpid()))
            time.sleep(float(os.environ.get("BEAMISH_TEST_START_SLOW", "0")))
