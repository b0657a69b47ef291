"""Test agents for the recover/attempt pipeline (issue 9): real processes, real crashes."""

from __future__ import annotations

import ctypes
import os
import time
from typing import Any

from beamish.runtime import Agent, Stop
from tests.agents.basic import Counter


def _note(path: str, line: str) -> None:
    """Append a line to ``path`` (a side effect that survives the process)."""
    with open(path, "a") as fh:
        fh.write(line + "\n")


class GivesUp(Counter):
    """Counts; ``"poison"`` (a call or a cast) raises every time. Its ``recover`` notes
    each run in the file ``args["log"]`` and returns ``Stop(args["reason"])``."""

    def init(self, args: dict[str, Any]) -> dict[str, Any]:
        return {**super().init(args), "log": args["log"], "reason": args.get("reason", "normal")}

    def handle_call(self, msg: Any, state: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        if msg == "poison":
            raise ValueError("poison call")
        return super().handle_call(msg, state)

    def handle_cast(self, msg: Any, state: dict[str, Any]) -> dict[str, Any]:
        if msg == "poison":
            raise ValueError("poison cast")
        return super().handle_cast(msg, state)

    def recover(self, failure: Any, state: dict[str, Any]) -> Any:
        _note(state["log"], f"{failure.kind} {(failure.in_flight or {}).get('seq')}")
        return Stop(state["reason"])


class CrashingRecover(Agent):
    """``"work"`` (a call or a cast) raises the first time (the file ``args["tried"]``
    records it) and succeeds after that; its ``recover`` notes each run in
    ``args["log"]``, then kills its own process (``os._exit``), every time."""

    def init(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"log": args["log"], "tried": args["tried"]}

    def handle_call(self, msg: Any, state: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        return self._work(state) if msg == "work" else "ok", state

    def handle_cast(self, msg: Any, state: dict[str, Any]) -> dict[str, Any]:
        if msg == "work":
            self._work(state)
        return state

    def _work(self, state: dict[str, Any]) -> str:
        if not os.path.exists(state["tried"]):
            _note(state["tried"], "tried")
            raise RuntimeError("the first try fails")
        return "worked"

    def recover(self, failure: Any, state: dict[str, Any]) -> Any:
        _note(state["log"], "recover")
        os._exit(7)


class Forgetful(Agent):
    """Forgets to return its state on command: the cast ``"forget"`` and every info
    message (a timer, a ``Down``) return None; the call ``"forget"`` replies
    ``("oops", None)``. Anything else counts."""

    def init(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"n": 0}

    def handle_call(self, msg: Any, state: dict[str, Any]) -> tuple[Any, Any]:
        if msg == "get":
            return state, state
        if msg == "forget":
            return "oops", None
        if msg == "arm":
            self.ctx.send_after(0.0, "tick")
            return "armed", state
        if isinstance(msg, list) and msg[0] == "monitor":
            self.ctx.monitor(msg[1])
            return "monitoring", state
        state["n"] += 1
        return state["n"], state

    def handle_cast(self, msg: Any, state: dict[str, Any]) -> Any:
        state["n"] += 1
        if msg == "forget":
            state["n"] += 100  # changed in place, then the return was forgotten
            return None
        return state

    def handle_info(self, msg: Any, state: dict[str, Any]) -> Any:
        state["n"] += 1000
        return None


class Stateless(Agent):
    """Keeps no state: ``init`` returns None and so does every handler (legitimately)."""

    def init(self, args: dict[str, Any]) -> None:
        return None

    def handle_call(self, msg: Any, state: None) -> tuple[Any, None]:
        return {"echo": msg, "state": state}, None

    def handle_cast(self, msg: Any, state: None) -> None:
        return None


class _NativeHandle:
    """Stands for a C extension's object whose destructor segfaults: it crashes the process
    when it is freed, which may be after the handler that made it has returned."""

    def __del__(self) -> None:
        ctypes.string_at(0)


class DiesAfterReturn(Agent):
    """The cast ``{"op": "doomed"}`` notes an attempt in ``args["log"]`` and returns
    normally, leaving a `_NativeHandle` in the message: the process dies when the runtime
    drops the message, after the handler returned and before the commit. Anything else
    counts; the call ``"get"`` answers the count."""

    def init(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"n": 0, "log": args["log"]}

    def handle_call(self, msg: Any, state: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        return state["n"], state

    def handle_cast(self, msg: Any, state: dict[str, Any]) -> dict[str, Any]:
        if isinstance(msg, dict) and msg.get("op") == "doomed":
            _note(state["log"], "attempt")
            msg["native"] = _NativeHandle()
        state["n"] += 1
        return state


class HeldRecover(Agent):
    """``"work"`` (a cast) raises the first time (the file ``args["tried"]`` records it) and
    counts after that; its ``recover`` notes each run in ``args["log"]``, then, while the
    file ``args["hold"]`` exists, hangs (the start never completes), else resumes."""

    def init(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"n": 0, "log": args["log"], "tried": args["tried"], "hold": args["hold"]}

    def handle_call(self, msg: Any, state: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        return state["n"], state

    def handle_cast(self, msg: Any, state: dict[str, Any]) -> dict[str, Any]:
        if not os.path.exists(state["tried"]):
            _note(state["tried"], "tried")
            raise RuntimeError("the first try fails")
        state["n"] += 1
        return state

    def recover(self, failure: Any, state: dict[str, Any]) -> Any:
        from beamish.runtime import Resume
        _note(state["log"], f"recover {failure.kind}")
        while os.path.exists(state["hold"]):
            time.sleep(0.05)
        return Resume(state)
