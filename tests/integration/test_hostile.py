"""A hostile local client sends malformed frames to every node and agent socket: each is
dropped and counted, and nothing stops serving."""

from __future__ import annotations

import os

import pytest
import zmq

from tests.conftest import wait_until

pytestmark = pytest.mark.slow
GARBAGE = [
    [b"not msgpack at all"],
    [b"\x09", b"\x01", b"", b"", b"\xc1"],  # wrong version
    [b"\x01", b"\x63", b"", b"", b"\x80"],  # unknown kind
    [b"\x01", b"\x01", b"id", b"", b"\xc1"],  # invalid msgpack
    [b"\x01", b"\x01", b"id", b"", b"\x81\xa2op\x01"],  # op is not a string
    [b"\x01", b"\x01", b"id", b"", b"\x81\xa2op\xa4nope"],  # unknown op
    [b"\x01"],  # truncated compact frame
    [b"\x01\x07\x08\x00\x00"],  # a ring whose msg_id is cut short
    [b"a", b"b", b"c"],
    [b""],
]


def test_malformed_frames_are_dropped_and_counted(node):
    ref = node.spawn("tests.agents.basic:Counter", name="c")
    ref.call("incr")
    ctx = zmq.Context()
    try:
        control = ctx.socket(zmq.DEALER)
        control.setsockopt(zmq.LINGER, 0)
        control.connect("ipc://" + node.paths.control)
        pushes = []
        for path in (node.paths.node_in, node.paths.agent_inbox(1)):
            sock = ctx.socket(zmq.PUSH)
            sock.setsockopt(zmq.LINGER, 0)
            sock.connect("ipc://" + path)
            pushes.append(sock)
        for frames in GARBAGE * 5:
            control.send_multipart(frames)
            for sock in pushes:
                sock.send_multipart(frames)
        control.send_multipart([b"\x01", b"\x01", b"id", b"", os.urandom(1 << 20)])
        # The node answers the unknown op with a typed error, not silence or a crash.
        assert control.poll(5000)
        assert b"unknown command" in b"".join(control.recv_multipart())
        # 45 invalid frames on the control socket (answered in order before the reply above),
        # 50 on the node's report socket (drained by the same loop, maybe a moment later)
        wait_until(lambda: node._control.request("ping")["dropped_frames"] >= 95,
                   what="every malformed frame to be counted")
        assert ref.call("incr") == 2  # the agent kept serving, with its state
        assert node.spawn("tests.agents.basic:Counter", name="d").call("get") == 0
    finally:
        ctx.destroy(linger=0)
