"""The agents the benchmarks run, on beamish and on the threads runtime alike.

They are named by import path; the paths are computed from ``__name__`` so they work
both from a checkout (``benchmarks.agents``) and from the installed package
(``beamish.benchmarks.agents``).
"""

from __future__ import annotations

import asyncio
import mmap
import os
import struct
import time
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


class Napper(Agent):
    """An ``async def`` handler that awaits ``asyncio.sleep(msg)`` (seconds), then replies
    with ``msg``: an agent waiting on I/O (a model, a tool) for as long as it is told."""

    async def handle_call(self, msg: Any, state: Any) -> tuple[Any, Any]:
        await asyncio.sleep(float(msg))
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
NAPPER = f"{__name__}:Napper"
COUNTER = f"{__name__}:Counter"
FLAKY = f"{__name__}:Flaky"


def busy_loop(count: int) -> int:
    """The unit of pure-Python CPU work: sum ``count`` integers in a Python loop (it holds
    the GIL throughout; no C call that would release it)."""
    total = 0
    for i in range(count):
        total += i
    return total


class Spinner(Agent):
    """The noisy neighbour: the cast ``{"spin": seconds}`` spins the CPU in pure Python for
    that long; the call ``"ping"`` answers ``"pong"`` (after any spin it is behind)."""

    def handle_call(self, msg: Any, state: Any) -> tuple[Any, Any]:
        return "pong", state

    def handle_cast(self, msg: Any, state: Any) -> Any:
        deadline = time.perf_counter() + float(msg["spin"])
        while time.perf_counter() < deadline:
            busy_loop(1000)
        return state


class Worker(Agent):
    """CPU-bound work: the cast ``{"work": count}`` runs `busy_loop` (count) and counts one
    unit; the call ``"count"`` answers the units done."""

    def init(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"n": 0}

    def handle_call(self, msg: Any, state: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        if isinstance(msg, dict) and "work" in msg:
            busy_loop(int(msg["work"]))
            state["n"] += 1
        return state["n"], state

    def handle_cast(self, msg: Any, state: dict[str, Any]) -> dict[str, Any]:
        busy_loop(int(msg["work"]))
        state["n"] += 1
        return state


class Faulty(Agent):
    """Fails on command in the ways the fault matrix lists; the cast ``"incr"`` counts, the
    call ``"count"`` answers the count and ``"pid"`` the process id.

    Calls: ``"raise"`` (a Python exception), ``"exit"`` (``os._exit(3)``), ``"segv"``
    (SIGSEGV in C: ``ctypes.string_at(0)``), ``"bomb"`` (allocates 8 MiB blocks until
    stopped), ``"spin"`` (an infinite pure-Python loop), ``{"spin": seconds}`` (a bounded
    one, for the threads runtime, which cannot stop a thread). ``{"fault": one of those,
    "stamp": path}`` does the same, writing ``time.monotonic()`` into the 8-byte file
    ``path`` just before the fault and at every step of a bomb or a loop: the last value
    there is the last moment the process was seen alive (how the benchmark times a restart
    from the death itself, also for the retries it cannot see).
    """

    def init(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"n": 0}

    def handle_call(self, msg: Any, state: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        stamp = _no_stamp
        if isinstance(msg, dict) and "stamp" in msg:
            stamp = _stamper(msg["stamp"])
            msg = msg.get("fault", {k: v for k, v in msg.items() if k != "stamp"})
        stamp()
        if msg == "count":
            return state["n"], state
        if msg == "pid":
            return os.getpid(), state
        if msg == "raise":
            raise ValueError("boom")
        if msg == "exit":
            os._exit(3)
        if msg == "segv":
            import ctypes
            ctypes.string_at(0)
        if msg == "bomb":
            hoard = []
            while True:
                hoard.append(bytearray(8 * 1024 * 1024))
                stamp()
        if msg == "spin":
            while True:
                busy_loop(1000)
                stamp()
        if isinstance(msg, dict) and "spin" in msg:
            deadline = time.perf_counter() + float(msg["spin"])
            while time.perf_counter() < deadline:
                busy_loop(1000)
                stamp()
            return "spun", state
        return state["n"], state

    def handle_cast(self, msg: Any, state: dict[str, Any]) -> dict[str, Any]:
        state["n"] += 1
        return state


def _no_stamp() -> None:
    return None


def _stamper(path: str) -> Any:
    """A function writing ``time.monotonic()`` into the 8-byte file ``path`` (shared
    memory: the value is there for other processes even if this one is SIGKILLed next)."""
    fd = os.open(path, os.O_RDWR)
    try:
        mem = mmap.mmap(fd, 8)
    finally:
        os.close(fd)
    clock, pack_into = time.monotonic, struct.pack_into

    def stamp() -> None:
        pack_into("d", mem, 0, clock())
    return stamp


def read_stamp(path: str) -> float | None:
    """The last moment a `Faulty` agent stamped into ``path`` (None: it never did)."""
    with open(path, "rb") as fh:
        value: float = struct.unpack("d", fh.read(8))[0]
    return value or None


def new_stamp(path: str) -> str:
    """Create the empty stamp file ``path`` for `Faulty`; return it."""
    with open(path, "wb") as fh:
        fh.write(bytes(8))
    return path


SPINNER = f"{__name__}:Spinner"
WORKER = f"{__name__}:Worker"
FAULTY = f"{__name__}:Faulty"
