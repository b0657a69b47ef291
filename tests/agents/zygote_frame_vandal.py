"""A module whose import writes forged frames to every Unix stream socket it finds: in
the zygote, that is the socket to the node (the zygote's own frames are then untrusted).

Its trial import (in a throwaway child, where that socket is closed) writes nothing
that reaches the node. Importing it is the fault, so it is a module of its own.
"""

from __future__ import annotations

import os
import socket
import struct
from typing import Any

from beamish.mailbox import pack
from beamish.runtime import Agent

FORGED = [
    {"op": "exited", "pid": "not a pid", "code": 0},
    {"op": "exited", "pid": 1, "code": "zero"},
    {"op": "exited", "pid": [1], "code": 0},
    {"op": "forked", "req": "1", "pid": 1},
    {"op": "forked", "req": 10 ** 6, "pid": 1},  # answers no request
    {"op": "forked"},
    {"op": "refused", "req": 1, "module": 5, "error": None},
    {"op": "unknown"},
    ["a", "list"],
    "text",
    None,
]


def _vandalize() -> int:
    written = 0
    for name in os.listdir("/proc/self/fd"):
        try:
            sock = socket.socket(fileno=os.dup(int(name)))
        except OSError:
            continue
        try:
            if sock.family == socket.AF_UNIX and sock.type == socket.SOCK_STREAM:
                for frame in FORGED:
                    data = pack(frame)
                    sock.sendall(struct.pack(">I", len(data)) + data)
                    written += 1
        except OSError:
            pass
        finally:
            sock.close()
    return written


WRITTEN = _vandalize()


class Innocent(Agent):
    """Answers ``"ok"``."""

    def handle_call(self, msg: Any, state: Any) -> tuple[Any, Any]:
        return "ok", state
