"""Test agents for the supervision conformance tests (issue 9): agents that set links and
monitors in ``init``/``recover``, and agents that spawn from ``init``."""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from beamish.runtime import Agent, BeamishError, Resume


class InitWatcher(Agent):
    """Runs ``args["init_ops"]`` (``[op, name]`` pairs, op ``monitor`` or ``link``) in
    ``init`` and ``args["recover_ops"]`` in ``recover``; keeps every Down/Exit it gets.
    ``"crash"`` kills its process (``os._exit``)."""

    def init(self, args: dict[str, Any]) -> dict[str, Any]:
        for op, name in args.get("init_ops", []):
            getattr(self.ctx, op)(name)
        return {"seen": [], "recover_ops": args.get("recover_ops", [])}

    def handle_call(self, msg: Any, state: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        if msg == "seen":
            return state["seen"], state
        if msg == "pid":
            return os.getpid(), state
        if msg == "crash":
            os._exit(7)
        return None, state

    def handle_info(self, msg: Any, state: dict[str, Any]) -> dict[str, Any]:
        state["seen"].append([type(msg).__name__, msg.name, msg.reason])
        return state

    def recover(self, failure: Any, state: dict[str, Any]) -> Any:
        for op, name in state.get("recover_ops", []):
            getattr(self.ctx, op)(name)
        return Resume(state)


class TrappingInitWatcher(InitWatcher):
    """An `InitWatcher` that traps exits."""

    trap_exits = True


class InitSpawner(Agent):
    """Spawns ``args["child_cls"]`` named ``args["child"]`` into ``args["into"]`` from
    ``init``, and named ``args["recover_child"]`` (if given) from ``recover``; keeps each
    spawn's outcome (the name, or the error's type and message)."""

    def _spawn(self, args: dict[str, Any], child: str) -> list[Any]:
        try:
            return ["ok", self.ctx.spawn(args["child_cls"], name=child, supervisor=args["into"],
                                         timeout=args.get("timeout", 30.0))]
        except BeamishError as exc:
            return [type(exc).__name__, str(exc)]

    def init(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"args": args, "outcome": self._spawn(args, args["child"]),
                "recovered": None}

    def handle_call(self, msg: Any, state: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        if msg == "outcome":
            return state["outcome"], state
        if msg == "recovered":
            return state["recovered"], state
        if msg == "pid":
            return os.getpid(), state
        return None, state

    def recover(self, failure: Any, state: dict[str, Any]) -> Any:
        if state["args"].get("recover_child"):
            state["recovered"] = self._spawn(state["args"], state["args"]["recover_child"])
        return Resume(state)


class GatedInit(Agent):
    """A counter whose ``init`` is driven by files: it writes its pid to ``args["entered"]``
    on entry, raises if ``args["fail_if"]`` exists, and waits (up to a minute) for
    ``args["wait_for"]`` to exist. ``"get"`` answers the count."""

    def init(self, args: dict[str, Any]) -> dict[str, Any]:
        if args.get("entered"):
            with open(args["entered"], "a") as f:
                f.write(str(os.getpid()))
        if args.get("fail_if") and os.path.exists(args["fail_if"]):
            raise RuntimeError("init refused: the fail_if file exists")
        deadline = time.monotonic() + 60
        while args.get("wait_for") and not os.path.exists(args["wait_for"]) \
                and time.monotonic() < deadline:
            time.sleep(0.01)  # a test agent's gate, not a test's wait
        return {"n": args.get("start", 0)}

    def handle_call(self, msg: Any, state: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        if msg == "get":
            return state["n"], state
        state["n"] += 1
        return state["n"], state


class DiesRightAfterInit(Agent):
    """A counter whose first process kills itself (``os._exit(3)``) a moment after ``init``
    returned, once: it creates ``args["marker"]`` as it dies, and later processes see it
    and live."""

    def init(self, args: dict[str, Any]) -> dict[str, Any]:
        marker = args["marker"]
        if not os.path.exists(marker):
            def die() -> None:
                time.sleep(0.3)  # init has returned and the agent reported ready
                open(marker, "a").close()
                os._exit(3)
            threading.Thread(target=die, daemon=True).start()
        return {"n": 0, "marker": marker}

    def handle_call(self, msg: Any, state: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        state["n"] += 1
        return state["n"], state
