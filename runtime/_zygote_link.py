"""The node's side of the zygote: start it, ask it to fork, hear about exits."""

from __future__ import annotations

import itertools
import os
import select
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from beamish.mailbox import ProtocolError, unpack

from ._osproc import FrameReader, send_frame
from .errors import BeamishInternalError


class ZygoteLink:
    """Runs the zygote process and talks to it.

    Args:
        sys_path: the module search path agents import with.
        on_exit: called as ``on_exit(pid, returncode)`` (from the reader thread) for every
            agent process that ends.
        on_ready: called with an agent's ready report (from the reader thread): agents
            write it to a datagram socket the zygote passes on to them.
    """

    def __init__(self, sys_path: list[str], on_exit: Callable[[int, int], None],
                 on_ready: Callable[[dict[str, Any]], None]) -> None:
        self.on_exit = on_exit
        self.on_ready = on_ready
        ours, theirs = socket.socketpair()
        # Datagrams: each report arrives whole or not at all, and a stray write by some
        # agent's own child cannot shift the framing of the others.
        ready_ours, ready_theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        ready_ours.setblocking(False)
        env = dict(os.environ, BEAMISH_SYS_PATH=os.pathsep.join(sys_path))
        # Started from the node's main thread: PDEATHSIG follows the thread that forked.
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "beamish.runtime._zygote", str(theirs.fileno()),
             str(ready_theirs.fileno())],
            pass_fds=(theirs.fileno(), ready_theirs.fileno()), env=env,
            stdin=subprocess.DEVNULL)
        theirs.close()
        ready_theirs.close()  # the zygote and its agents hold that end
        self.ready = ready_ours
        self.sock = ours
        self.lock = threading.Lock()
        self.req = itertools.count(1)
        self.pending: dict[int, Future[int]] = {}
        self.closed = False
        self.dropped_ready = 0  # datagrams on the ready socket that were not a report
        self.reader = threading.Thread(target=self._read, name="beamish-zygote", daemon=True)
        self.reader.start()

    def fork(self, boot: dict[str, Any], preload: list[str] | None = None,
             timeout: float = 30.0) -> int:
        """Ask the zygote to fork an agent with ``boot``; return the new pid."""
        fut: Future[int] = Future()
        with self.lock:
            if self.closed:
                raise BeamishInternalError("the zygote is gone; the node is stopping")
            n = next(self.req)
            self.pending[n] = fut
            send_frame(self.sock, {"op": "fork", "req": n, "boot": boot,
                                   "preload": preload or []})
        return fut.result(timeout)

    def _read(self) -> None:
        reader = FrameReader(self.sock)
        poller = select.poll()  # not select(): no limit on the fd number
        poller.register(self.sock, select.POLLIN | select.POLLHUP)
        poller.register(self.ready, select.POLLIN)
        while True:
            try:
                events = dict(poller.poll())
                # Ready reports first: an agent that reported and then died is heard in
                # that order (its exit comes through the zygote, after it wrote).
                if self.ready.fileno() in events:
                    self._read_ready()
                frames = reader.read() if self.sock.fileno() in events else []
            except OSError:
                frames = None
            if frames is None:
                with self.lock:
                    self.closed = True
                    for fut in self.pending.values():
                        fut.set_exception(BeamishInternalError("the zygote exited"))
                    self.pending.clear()
                return
            for msg in frames:
                if msg["op"] == "forked":
                    with self.lock:
                        fut = self.pending.pop(msg["req"], None)
                    if fut is not None:
                        fut.set_result(int(msg["pid"]))
                elif msg["op"] == "exited":
                    self.on_exit(int(msg["pid"]), int(msg["code"]))

    def _read_ready(self) -> None:
        """Hand on every ready report queued (one datagram each); drop what is not one."""
        while True:
            try:
                data = self.ready.recv(1 << 16)
            except BlockingIOError:
                return
            try:
                payload = unpack(data)
            except ProtocolError:
                self.dropped_ready += 1
                continue
            if isinstance(payload, dict):
                self.on_ready(payload)
            else:
                self.dropped_ready += 1

    def alive(self) -> bool:
        """Whether the zygote process still runs."""
        return self.proc.poll() is None

    def close(self) -> None:
        """Stop the zygote (its remaining children die with it)."""
        with self.lock:
            if not self.closed:
                try:
                    send_frame(self.sock, {"op": "exit"})
                except OSError:
                    pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.sock.close()
        self.ready.close()
