"""Agents for the durable-timer tests (tests/integration/test_timers.py)."""

from __future__ import annotations

import os
import signal
from typing import Any

from beamish.runtime import Agent, BeamishError, Failure


class Alarm(Agent):
    """Sets and cancels durable timers on command; every timer message it receives is
    appended to ``state["fired"]`` (the ledger the tests check)."""

    def init(self, args: dict[str, Any]) -> dict[str, Any]:
        state: dict[str, Any] = {"fired": [], "ids": {}}
        if args.get("arm_in_init") is not None:
            state["ids"]["init"] = self.ctx.send_after(args["arm_in_init"], "init")
        return state

    def handle_call(self, msg: dict[str, Any], state: dict[str, Any]) -> tuple[Any, Any]:
        op = msg["op"]
        if op == "set":
            ident = self.ctx.send_after(msg["after"], msg["tag"])
            state["ids"][msg["tag"]] = ident
            return ident, state
        if op == "set_then_raise":
            self.ctx.send_after(msg["after"], msg["tag"])
            raise RuntimeError("raised after send_after")
        if op == "set_then_die":
            # Only the first attempt: its retry (after the kill) finds the marker.
            if not os.path.exists(msg["marker"]):
                open(msg["marker"], "w").close()
                self.ctx.send_after(msg["after"], msg["tag"])
                os.kill(os.getpid(), signal.SIGKILL)
            return "retried", state
        if op == "crash":
            raise RuntimeError(msg["why"])
        if op == "big":
            return self.ctx.send_after(0.0, b"x" * msg["size"]), state
        if op == "cancel":
            return self.ctx.cancel_timer(msg["id"]), state
        if op == "set_and_cancel":
            ident = self.ctx.send_after(msg["after"], msg["tag"])
            return self.ctx.cancel_timer(ident), state
        if op == "bad":
            try:
                self.ctx.send_after(msg["after"], msg.get("msg", "x") if "msg" in msg
                                    else "x")
            except BeamishError as exc:
                return type(exc).__name__, state
            return "accepted", state
        if op == "bad_msg":
            try:
                self.ctx.send_after(0.0, object() if msg["what"] == "object"
                                    else b"x" * msg["size"])
            except BeamishError as exc:
                return type(exc).__name__, state
            return "accepted", state
        if op == "bad_cancel":
            try:
                self.ctx.cancel_timer(msg["id"])
            except BeamishError as exc:
                return type(exc).__name__, state
            return "accepted", state
        return state["fired"], state

    def recover(self, failure: Failure, state: Any) -> Any:
        if failure.message == "arm in recover":
            self.ctx.send_after(0.0, "from recover")
        marker = (failure.message or "").partition("raise in recover once:")[2]
        if marker and not os.path.exists(marker):
            open(marker, "w").close()
            self.ctx.send_after(0.0, "never")
            raise RuntimeError("recover raised after send_after")  # treated as Reset
        return super().recover(failure, state)

    def handle_cast(self, msg: dict[str, Any], state: dict[str, Any]) -> dict[str, Any]:
        self.ctx.send_after(msg["after"], msg["tag"])  # the ledger test: ids not kept
        return state

    def handle_info(self, msg: Any, state: dict[str, Any]) -> dict[str, Any]:
        state["fired"].append(msg)
        return state
