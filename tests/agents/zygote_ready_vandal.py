"""An agent that writes garbage to the ready socket it inherited from the zygote (the
datagram socket agents report "ready" on), as hostile user code could."""

from __future__ import annotations

import os
import socket
from typing import Any

from beamish.mailbox import pack
from beamish.runtime import Agent


def _ready_sockets() -> list[int]:
    """The inherited Unix datagram sockets of this process (found as an attacker would)."""
    found = []
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            sock = socket.socket(fileno=os.dup(fd))
        except OSError:
            continue
        try:
            if sock.family == socket.AF_UNIX and sock.type == socket.SOCK_DGRAM:
                found.append(fd)
        finally:
            sock.close()
    return found


def garbage(pid: int) -> list[bytes]:
    """Datagrams of every wrong shape: not msgpack, wrong types, huge, truncated, and
    well-formed reports forged for process ``pid`` (not the sender)."""
    good = pack({"ev": "ready", "id": 1, "inc": 1, "pid": pid, "trap_exits": False})
    return [
        b"not msgpack at all",
        b"",
        b"\xc1",  # never valid msgpack
        good[:-3],  # truncated
        pack("a string"),
        pack([1, 2, 3]),
        pack({"pid": "not a pid"}),
        pack({"ev": "ready", "pid": [pid], "id": 1, "inc": 1}),
        pack({"ev": "ready", "pid": 2 ** 64 - 1, "id": 1, "inc": 1}),
        pack({"ev": "ready", "pid": -3, "id": "x", "inc": None}),
        pack({"ev": "ready", "pid": 1.5, "id": {}, "inc": []}),
        pack({"ev": "ready", "pid": True, "id": 1, "inc": 1}),
        pack({"ev": "ready", "pid": pid, "id": 1, "inc": 1, "trap_exits": {"a": 1}}),
        pack({b"pid": pid}),
        pack({"pid": None}),
        pack({"ev": "ready", "pid": pid, "id": 1, "inc": 1, "pad": b"x" * 60_000}),  # huge
        os.urandom(100_000),  # bigger than the reader's buffer
    ]


def _fork_reports(count: int) -> int:
    """Fork ``count`` short-lived children that each send a well-formed ready report for
    itself (the kernel vouches for its pid), none of them an agent. Returns how many sent."""
    fds = _ready_sockets()
    sent = 0
    for _ in range(count):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                sock = socket.socket(fileno=os.dup(fds[0]))
                sock.send(pack({"ev": "ready", "id": 1, "inc": 1, "pid": os.getpid()}))
                code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        sent += status == 0
    return sent


class ReadyVandal(Agent):
    """``"vandalize"`` writes every garbage datagram to each inherited datagram socket
    and answers how many it wrote; ``{"fork_reports": n}`` has n children report ready;
    ``"get"``/``"incr"`` count, as a counter."""

    def init(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"n": 0}

    def handle_call(self, msg: Any, state: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        if msg == "vandalize":
            written = 0
            for fd in _ready_sockets():
                sock = socket.socket(fileno=os.dup(fd))
                try:
                    for data in garbage(os.getppid()) * 3:
                        try:
                            sock.send(data, socket.MSG_DONTWAIT)
                            written += 1
                        except OSError:
                            pass  # too big for a datagram, or the queue is full
                finally:
                    sock.close()
            return written, state
        if isinstance(msg, dict) and "fork_reports" in msg:
            return _fork_reports(int(msg["fork_reports"])), state
        if msg == "get":
            return state["n"], state
        state["n"] += 1
        return state["n"], state
