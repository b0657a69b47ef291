"""Test agents for issue 9's hostile-input and fault tests (real processes)."""

from __future__ import annotations

import os
from typing import Any

from beamish.runtime import Agent


class Hoarder(Agent):
    """Keeps what it is cast in its state: ``{"kib": n}`` adds ``n`` KiB of random bytes
    (incompressible), so every commit writes more."""

    def init(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"blobs": [], "kib": 0}

    def handle_call(self, msg: Any, state: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        if msg == "size":
            return state["kib"], state
        state["blobs"].append(os.urandom(1024 * int(msg["kib"])))
        state["kib"] += int(msg["kib"])
        return state["kib"], state


class Forger(Agent):
    """Sends the node report frames it is given, from its own (user code) process:
    ``{"dir": node_dir, "payloads": [...]}`` sends each payload as an INFO envelope to the
    node's report socket."""

    def handle_call(self, msg: Any, state: Any) -> tuple[Any, Any]:
        import msgpack
        import zmq

        from beamish.runtime._paths import NodePaths
        ctx = zmq.Context()
        try:
            sock = ctx.socket(zmq.PUSH)
            sock.setsockopt(zmq.LINGER, 2000)
            sock.connect("ipc://" + NodePaths(msg["dir"]).node_in)
            for payload in msg["payloads"]:
                sock.send_multipart([b"\x01", b"\x04", b"", b"",
                                     msgpack.packb(payload, use_bin_type=True)])
            sock.close(linger=2000)
        finally:
            ctx.term()
        return len(msg["payloads"]), state
