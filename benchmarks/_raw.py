"""The floor: a raw pyzmq DEALER <-> ROUTER round trip between two processes on ipc://.

`RawEcho.start` forks an echo server. Fork it before this process creates any ZeroMQ
context or thread (a context does not survive ``fork``); the child makes its own and
always ends with ``os._exit``.
"""

from __future__ import annotations

import os
import select
import signal
import time
from typing import Any

import zmq

STOP = b"\x00stop"
_ORPHAN_CHECK_MS = 1000


def _serve(endpoint: str, ready_w: int, parent: int) -> None:
    ctx = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.bind(endpoint)
    os.write(ready_w, b"k")
    os.close(ready_w)
    try:
        while True:
            # The timeout only notices an orphaned server; it is never on the measured path.
            if not sock.poll(_ORPHAN_CHECK_MS):
                if os.getppid() != parent:
                    return
                continue
            frames = sock.recv_multipart()
            sock.send_multipart(frames)
            if frames[-1] == STOP:
                return
    finally:
        sock.close(0)
        ctx.term()


class RawEcho:
    """A forked ROUTER echo server and this process's DEALER on it.

    Args:
        endpoint: ``ipc://...`` to bind (short: the unix socket path limit is ~100 bytes).
    """

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.pid = 0
        self.ctx: zmq.Context[Any] | None = None
        self.sock: zmq.Socket[Any] | None = None

    def start(self, timeout: float = 10.0) -> None:
        """Fork the server and wait until it is bound (no ZeroMQ context may exist yet)."""
        r, w = os.pipe()
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:  # the child: never returns into the benchmark
            code = 0
            try:
                os.close(r)
                _serve(self.endpoint, w, parent)
            except BaseException:  # noqa: BLE001 - the child must reach os._exit
                code = 1
            finally:
                os._exit(code)
        self.pid = pid
        os.close(w)
        try:
            if not select.select([r], [], [], timeout)[0] or os.read(r, 1) != b"k":
                raise RuntimeError(f"the raw echo server did not start within {timeout:g} s")
        finally:
            os.close(r)

    def connect(self) -> None:
        """Connect this process's DEALER (call after `start`, in the measuring process)."""
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(self.endpoint)

    def round_trip(self, payload: bytes) -> bytes:
        """Send ``payload`` and wait for it to come back."""
        assert self.sock is not None
        self.sock.send(payload)
        return self.sock.recv()

    def close(self, timeout: float = 5.0) -> None:
        """Stop the server (politely, else SIGKILL) and reap it; close the socket."""
        if self.sock is not None and self.pid:
            try:
                self.sock.send(STOP, zmq.NOBLOCK)
            except zmq.ZMQError:
                pass
        if self.pid:
            if self.sock is None:
                os.kill(self.pid, signal.SIGTERM)
            if not _wait_exit(self.pid, timeout):
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
            self.pid = 0
        if self.sock is not None:
            self.sock.close(0)
            self.sock = None
        if self.ctx is not None:
            self.ctx.term()
            self.ctx = None


def _wait_exit(pid: int, timeout: float) -> bool:
    """Reap child ``pid`` if it exits within ``timeout`` seconds; False if it did not."""
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        fd = -1
    if fd >= 0:
        try:
            select.select([fd], [], [], timeout)
        finally:
            os.close(fd)
        return os.waitpid(pid, os.WNOHANG)[0] != 0
    deadline = time.monotonic() + timeout
    while os.waitpid(pid, os.WNOHANG)[0] == 0:
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)  # no pidfd (not Linux): teardown only, never measured
    return True
