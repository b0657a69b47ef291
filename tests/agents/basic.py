"""Test agents driven by their arguments (real processes, real crashes)."""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal
import subprocess
import time
from typing import Any

from beamish.runtime import Agent, Stop


def _mark_entered(msg: dict[str, Any]) -> None:
    """Create the file named by ``msg["entered"]``, if any: the test then knows the
    handler is running (a fixed sleep in the test could race a slow machine)."""
    if msg.get("entered"):
        with open(msg["entered"], "w"):
            pass


class Counter(Agent):
    """The SPEC's counter: ``"get"`` answers the count, anything else increments it."""

    def init(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"n": args.get("start", 0)}

    def handle_call(self, msg: Any, state: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        if msg == "get":
            return state["n"], state
        if msg == "pid":
            return os.getpid(), state
        state["n"] += 1
        return state["n"], state

    def handle_cast(self, msg: Any, state: dict[str, Any]) -> dict[str, Any]:
        state["n"] += 1
        return state


class Echo(Agent):
    """Replies with the message it got."""

    def handle_call(self, msg: Any, state: Any) -> tuple[Any, Any]:
        return msg, state


class AsyncEcho(Agent):
    """An ``async def`` handler that awaits before replying."""

    async def handle_call(self, msg: Any, state: Any) -> tuple[Any, Any]:
        await asyncio.sleep(0.001)
        return {"echo": msg}, state


class Faulty(Agent):
    """Crashes on command, in the ways the SPEC lists; counts what it handled."""

    def init(self, args: dict[str, Any]) -> dict[str, Any]:
        if args.get("fail_init"):
            raise RuntimeError("init refused")
        return {"n": 0}

    def handle_call(self, msg: Any, state: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        if msg == "raise":
            raise ValueError("boom")
        if msg == "exit":
            os._exit(3)
        if msg == "segv":
            ctypes.string_at(0)
        if msg == "sigkill":
            os.kill(os.getpid(), signal.SIGKILL)
        if isinstance(msg, dict) and "start_child" in msg:
            return subprocess.Popen(["sleep", str(msg["start_child"])]).pid, state
        if msg == "close_stdio":
            for fd in (0, 1, 2):
                os.close(fd)
            return "closed", state
        if msg == "unserializable":
            state["bad"] = object()
            return "never", state
        if msg == "get":
            return state["n"], state
        if msg == "pid":
            return os.getpid(), state
        if isinstance(msg, dict) and "sleep" in msg:
            _mark_entered(msg)
            time.sleep(msg["sleep"])
            return "slept", state
        state["n"] += 1
        return state["n"], state

    def handle_cast(self, msg: Any, state: dict[str, Any]) -> Any:
        if msg == "raise":
            raise ValueError("cast boom")
        if msg == "sigkill":
            os.kill(os.getpid(), signal.SIGKILL)
        if isinstance(msg, dict) and "kill_first" in msg:
            # A side effect per attempt (a line in a file), and a SIGKILL for the first few.
            with open(msg["kill_first"], "a") as fh:
                fh.write("attempt\n")
            with open(msg["kill_first"]) as fh:
                if len(fh.readlines()) <= msg["times"]:
                    os.kill(os.getpid(), signal.SIGKILL)
        if isinstance(msg, dict) and "sleep" in msg:
            time.sleep(msg["sleep"])  # and counted, as any other cast
        if msg == "flaky" and not state.get("healed"):
            raise ConnectionError("upstream is down")
        if msg == "heal":
            state["healed"] = True
            return state
        if msg == "stop":
            return Stop("normal")
        state["n"] += 1
        return state


class Timers(Agent):
    """Uses send_after; counts ticks in its state."""

    def init(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"ticks": 0}

    def handle_call(self, msg: Any, state: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        if msg == "arm":
            self.ctx.send_after(0.05, "tick")
            return "armed", state
        return state["ticks"], state

    def handle_info(self, msg: Any, state: dict[str, Any]) -> dict[str, Any]:
        if msg == "tick":
            state["ticks"] += 1
        return state


class Relay(Agent):
    """Calls and casts other agents from inside its handlers, and spawns one."""

    def handle_call(self, msg: Any, state: Any) -> tuple[Any, Any]:
        op = msg["op"]
        if op == "call":
            return self.ctx.call(msg["to"], msg["msg"]), state
        if op == "cast":
            self.ctx.cast(msg["to"], msg["msg"])
            return "cast", state
        if op == "spawn":
            return self.ctx.spawn("tests.agents.basic:Counter", args={"start": 7},
                                  name=msg["name"]), state
        return None, state


class Stubborn(Agent):
    """Ignores the request to stop (a long handler), to test shutdown timeouts."""

    def handle_call(self, msg: Any, state: Any) -> tuple[Any, Any]:
        time.sleep(float(msg))
        return "done", state

    def terminate(self, reason: str, state: Any) -> None:
        path = os.environ.get("BEAMISH_TEST_TERMINATE_FILE")
        if path:
            with open(path, "a") as fh:
                fh.write(reason + "\n")


class Hog(Agent):
    """Misbehaves on command: a memory bomb, an infinite pure-Python loop, a C call that never
    returns, or burning CPU; counts what it handled otherwise."""

    def init(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"n": 0}

    def handle_call(self, msg: Any, state: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        if msg == "bomb":
            hoard = []
            while True:
                hoard.append(bytearray(8 * 1024 * 1024))
        if msg == "spin":
            while True:
                pass
        if msg == "c-sleep":
            ctypes.CDLL(None).sleep(3600)
        if msg == "get":
            return state["n"], state
        state["n"] += 1
        return state["n"], state


class Obedient(Agent):
    """Stops when asked; records the reason its terminate saw in a file named by its args."""

    def init(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"file": args.get("file")}

    def handle_call(self, msg: Any, state: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        if isinstance(msg, dict) and "sleep" in msg:
            _mark_entered(msg)
            time.sleep(msg["sleep"])
        if msg == "stop-normal":
            return Stop("normal", reply="bye")
        if msg == "stop-odd":
            return Stop("odd", reply="bye")
        if msg == "pid":
            return os.getpid(), state
        return "ok", state

    def terminate(self, reason: str, state: dict[str, Any]) -> None:
        if state.get("file"):
            with open(state["file"], "a") as fh:
                fh.write(reason + "\n")


class Watcher(Agent):
    """Monitors or links other agents on command; keeps every Down/Exit it receives."""

    def init(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"seen": []}

    def handle_call(self, msg: Any, state: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        if msg == "seen":
            return state["seen"], state
        if msg == "pid":
            return os.getpid(), state
        op, name = msg
        getattr(self.ctx, op)(name)
        return "ok", state

    def handle_info(self, msg: Any, state: dict[str, Any]) -> dict[str, Any]:
        state["seen"].append([type(msg).__name__, msg.name, msg.reason])
        return state


class TrappingWatcher(Watcher):
    """A Watcher that traps exits: linked crashes arrive as Exit messages."""

    trap_exits = True


class Recovering(Agent):
    """Its ``recover`` answers as its args say; ``"work"`` crashes the process (os._exit)
    while the state is ``poisoned`` (a history longer than 2 turns, say)."""

    def init(self, args: dict[str, Any]) -> dict[str, Any]:
        # A fresh init after a Reset starts with a short history (the marker file says so).
        again = os.path.exists(args.get("marker", "/nonexistent"))
        if args.get("marker"):
            open(args["marker"], "a").close()
        return {"mode": args.get("mode"), "history": ["t1"] if again else ["t1", "t2", "t3"]}

    def handle_call(self, msg: Any, state: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        if msg == "state":
            return state, state
        if msg == "work":
            if len(state["history"]) > 2:
                os._exit(3)  # "context too long": dies every time until compacted
            return {"answered_with": len(state["history"])}, state
        return None, state

    def recover(self, failure: Any, state: dict[str, Any]) -> Any:
        from beamish.runtime import Escalate, Reset, Resume, Skip
        mode = state["mode"]
        if mode == "compact":
            return Resume({**state, "history": state["history"][-1:], "compacted": True})
        if mode == "skip":
            return Skip({**state, "skipped": failure.kind})
        if mode == "skip-forgetting-state":
            return Skip(None)  # a bug: the state must be kept, and the bug reported
        if mode == "reset":
            return Reset()
        if mode == "stop":
            return Stop("normal")
        if mode == "escalate":
            return Escalate("cannot go on")
        if mode == "raise":
            raise RuntimeError("recover itself failed")
        return super().recover(failure, state)


class Typed(Agent):
    """Declares pydantic models for its messages and its state."""

    from pydantic import BaseModel as _Base

    class Ask(_Base):
        question: str
        max_words: int = 10

    class Memo(_Base):
        text: str

    CallMessage = Ask
    CastMessage = Memo

    def init(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"memos": []}

    def handle_call(self, msg: Any, state: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        return {"echo": msg["question"], "memos": len(state["memos"])}, state

    def handle_cast(self, msg: Any, state: dict[str, Any]) -> dict[str, Any]:
        state["memos"].append(msg["text"])
        return state
