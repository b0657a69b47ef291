"""The node's side of the zygote: start it, ask it to fork, hear about exits, and start
a new one when it dies.

The zygote and the agents run user code, so nothing they write is trusted: every frame
and ready datagram is checked field by field (``messaging/wire.py``), and what does not
fit is dropped, counted (`ZygoteLink.dropped`, shown by ``beamish node status``) and
logged. The reader thread never dies of a bad input.
"""

from __future__ import annotations

import functools
import itertools
import logging
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

import psutil

from beamish.mailbox import ProtocolError

from .._types import WireMap
from ..errors import BeamishInternalError
from ..messaging.wire import (
    Exited,
    ExitRequest,
    ForkRequest,
    FrameDecoder,
    Refused,
    Report,
    encode_zygote_request,
    parse_ready,
    parse_zygote_frame,
)

log = logging.getLogger("beamish.node")
READY_BUF = 1 << 16  # a ready report is ~60 bytes; a bigger datagram is cut and dropped


_PASSCRED = getattr(socket, "SO_PASSCRED", None)  # Linux
_UCRED = struct.Struct("iII")  # struct ucred: pid, uid, gid
_CREDS_SPACE = socket.CMSG_SPACE(_UCRED.size) if _PASSCRED is not None else 0


def _sender_pid(ancillary: list[tuple[int, int, bytes]]) -> int | None:
    """The sender's pid from SCM_CREDENTIALS (None where the OS does not say)."""
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == getattr(socket, "SCM_CREDENTIALS", -1) \
                and len(data) >= _UCRED.size:
            return int(_UCRED.unpack_from(data)[0])
    return None


class ZygoteLost(BeamishInternalError):
    """The zygote died (or the node is stopping) before it answered a fork request."""


class PreloadRefused(BeamishInternalError):
    """The zygote refused a fork: importing one of its modules kills the importing process.

    Attributes:
        module: the module's name.
        why: how its trial import ended (e.g. "importing it killed the process with SIGSEGV").
    """

    def __init__(self, module: str, why: str) -> None:
        super().__init__(f"module {module!r} cannot be loaded: {why}")
        self.module = module
        self.why = why


class _Generation:
    """One zygote process and the sockets to it (a new one when it is replaced)."""

    def __init__(self, sys_path: list[str]) -> None:
        ours, theirs = socket.socketpair()
        # Datagrams: each report arrives whole or not at all, and a stray write by some
        # agent's own child cannot shift the framing of the others.
        ready_ours, ready_theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        ready_ours.setblocking(False)
        if _PASSCRED is not None:
            # The kernel tells us who sent each report: a forged pid is dropped.
            ready_ours.setsockopt(socket.SOL_SOCKET, _PASSCRED, 1)
        env = dict(os.environ, BEAMISH_SYS_PATH=os.pathsep.join(sys_path))
        # Started from the node's main thread: PDEATHSIG follows the thread that forked.
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "beamish.runtime.agent.zygote", str(theirs.fileno()),
             str(ready_theirs.fileno())],
            pass_fds=(theirs.fileno(), ready_theirs.fileno()), env=env,
            stdin=subprocess.DEVNULL)
        theirs.close()
        ready_theirs.close()  # the zygote and its agents hold that end
        self.ready = ready_ours
        self.sock = ours
        self.pending: dict[int, Future[int]] = {}
        self.agents: set[int] = set()  # pids it forked whose exit it has not reported
        self.dead = False  # its socket reached end of stream
        self.exit_requested = False  # the node asked it to exit (its agents are not lost)
        self.asked = False  # a fork request was sent to it (it may have children)
        self.reader_done = threading.Event()  # its reader thread returned

    def close(self) -> None:
        self.sock.close()
        self.ready.close()


class ZygoteLink:
    """Runs the zygote process and talks to it; `restart` replaces it after it died.

    Args:
        sys_path: the module search path agents import with.
        on_exit: called as ``on_exit(pid, returncode)`` (from the reader thread) for every
            agent process that ends.
        on_ready: called with an agent's ready report, checked (from the reader thread):
            agents write it to a datagram socket the zygote passes on to them. A report
            can come before the zygote's answer to its fork names the pid: the callee
            holds it until the pid is known.
        on_lost: called (from the reader thread) with the pids of the agents a zygote
            that died had forked and not yet reported dead; they die with it.
    """

    def __init__(self, sys_path: list[str], on_exit: Callable[[int, int], None],
                 on_ready: Callable[[Report], None],
                 on_lost: Callable[[set[int], str], None] | None = None) -> None:
        self.sys_path = sys_path
        self.on_exit = on_exit
        self.on_ready = on_ready
        self.on_lost = on_lost
        self.lock = threading.Condition()
        self.req = itertools.count(1)
        self.closed = False
        self.dropped = 0  # frames and datagrams from the zygote or agents that did not fit
        self.gen = self._start()

    def _start(self) -> _Generation:
        gen = _Generation(self.sys_path)
        threading.Thread(target=self._read, args=(gen,), name="beamish-zygote",
                         daemon=True).start()
        return gen

    def fork(self, boot: WireMap, preload: list[str] | None = None,
             timeout: float = 120.0) -> int:
        """Ask the zygote to fork an agent with ``boot``; return the new pid. While a
        dead zygote is being replaced, wait for the new one.

        Raises:
            PreloadRefused: importing a module of ``preload`` kills the importing process.
            ZygoteLost: the zygote died before it answered, or the node is stopping.
        """
        deadline = time.monotonic() + timeout
        fut: Future[int] = Future()
        with self.lock:
            while True:
                while self.gen.dead and not self.closed:
                    if not self.lock.wait(deadline - time.monotonic()):
                        raise ZygoteLost(f"no zygote to fork from within {timeout:g} s")
                if self.closed:
                    raise ZygoteLost("the zygote is gone; the node is stopping")
                gen, n = self.gen, next(self.req)
                gen.pending[n] = fut
                gen.asked = True
                try:
                    gen.sock.sendall(encode_zygote_request(
                        ForkRequest(n, boot, tuple(preload or ()))))
                    break
                except OSError:
                    # It died and its reader has not seen it yet: the request never
                    # arrived, so it goes to the zygote that replaces this one.
                    del gen.pending[n]
                    if not self.lock.wait_for(functools.partial(self._gone, gen),
                                              deadline - time.monotonic()):
                        raise ZygoteLost(f"no zygote to fork from within {timeout:g} s") \
                            from None
        try:
            return fut.result(max(0.0, deadline - time.monotonic()))
        except FutureTimeout:
            raise ZygoteLost(f"the zygote did not answer a fork within {timeout:g} s") from None

    def _gone(self, gen: _Generation) -> bool:
        """Whether ``gen`` has died (its reader saw the end) or the link was closed."""
        return gen.dead or self.closed

    def _read(self, gen: _Generation) -> None:
        try:
            self._read_frames(gen)
        finally:
            gen.reader_done.set()

    def _read_frames(self, gen: _Generation) -> None:
        decoder = FrameDecoder()
        poller = select.poll()  # not select(): no limit on the fd number
        poller.register(gen.sock, select.POLLIN | select.POLLHUP)
        poller.register(gen.ready, select.POLLIN)
        while True:
            try:
                events = dict(poller.poll())
                # Ready reports first: an agent that reported and then died is heard in
                # that order (its exit comes through the zygote, after it wrote).
                if gen.ready.fileno() in events:
                    self._read_ready(gen)
                frames = _read_frames(gen.sock, decoder) if gen.sock.fileno() in events \
                    else []
            except ProtocolError as exc:
                # A frame that is not msgpack: the stream cannot be trusted any more.
                self._drop(f"an undecodable frame from the zygote ({exc})")
                gen.proc.kill()
                frames = None
            except OSError:
                frames = None
            if frames is None:
                self._lost(gen)
                return
            for msg in frames:
                try:
                    self._handle(gen, msg)
                except Exception:  # noqa: BLE001 - the reader must outlive any one frame
                    self.dropped += 1
                    log.exception("cannot handle a frame from the zygote: %.200r", msg)

    def _handle(self, gen: _Generation, raw: Any) -> None:
        msg = parse_zygote_frame(raw)
        if msg is None:
            self._drop(f"a malformed frame from the zygote: {raw!r:.200}")
            return
        if isinstance(msg, Exited):
            gen.agents.discard(msg.pid)
            self.on_exit(msg.pid, msg.code)
            return
        with self.lock:
            fut = gen.pending.pop(msg.req, None)
        if isinstance(msg, Refused):
            if fut is not None:
                fut.set_exception(PreloadRefused(msg.module, msg.error))
            return
        pid = msg.pid
        if not _may_be_child(pid, gen.proc.pid):
            if gen.proc.poll() is not None:
                error = ZygoteLost("the zygote died as it forked it")  # the child was orphaned
            else:
                self._drop(f"a fork answer naming pid {pid}, which is not the zygote's child")
                error = ZygoteLost(f"the zygote answered with pid {pid}, not its child")
            if fut is not None:
                fut.set_exception(error)
            return
        gen.agents.add(pid)
        if fut is None:
            # Its requester gave up waiting: no one will supervise it, so it must not run.
            log.warning("the zygote forked pid %d for a request that timed out: killing it",
                        pid)
            self._kill_child(gen, pid)
            return
        fut.set_result(pid)

    @staticmethod
    def _kill_child(gen: _Generation, pid: int) -> None:
        # Only a child of the zygote that it has not reported dead (its pid is not reused).
        if pid in gen.agents:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def _lost(self, gen: _Generation) -> None:
        """The zygote's socket closed: fail its pending forks, and (unless the node closed
        it) report the agents that die with it."""
        try:
            self._read_ready(gen)  # reports written before it died still count
        except OSError as exc:
            log.warning("cannot read the last ready reports of the zygote (pid %d): %s",
                        gen.proc.pid, exc)
        with self.lock:
            gen.dead = True
            pending = list(gen.pending.values())
            gen.pending.clear()
            # Not self.closed: a node that stops because its zygote keeps dying closes the
            # link too, and the agents of a zygote that died must still be reported.
            closing = gen.exit_requested
            self.lock.notify_all()
        for fut in pending:
            fut.set_exception(ZygoteLost("the zygote died before it answered"))
        if closing or self.on_lost is None:
            return
        try:
            gen.proc.wait(10)
        except subprocess.TimeoutExpired:
            gen.proc.kill()  # its socket is closed: it is of no more use
            gen.proc.wait()
        why = describe_exit(gen.proc.returncode)
        log.error("the zygote (pid %d) died (%s): its %d agents die with it; "
                  "starting a new zygote", gen.proc.pid, why, len(gen.agents))
        self.on_lost(set(gen.agents), why)

    def _drop(self, what: str) -> None:
        self.dropped += 1
        log.warning("dropped %s", what)

    def _read_ready(self, gen: _Generation) -> None:
        """Hand on every ready report queued (one datagram each); drop what is not one."""
        while True:
            try:
                data, ancillary, _, _ = gen.ready.recvmsg(READY_BUF, _CREDS_SPACE)
            except BlockingIOError:
                return
            report = parse_ready(data)
            if report is None:
                self._drop(f"a malformed ready datagram ({len(data)} bytes): {data[:80]!r}")
                continue
            sender = _sender_pid(ancillary)
            if sender is not None and sender != report.pid:
                self._drop(f"a ready report for pid {report.pid} sent by pid {sender}")
                continue
            # One that beats the fork answer for its pid is held by the spawner's on_ready
            # until its process is registered (bounded, for pids that never are).
            try:
                self.on_ready(report)
            except Exception:  # noqa: BLE001 - the reader must outlive any one report
                self.dropped += 1
                log.exception("cannot handle the ready report %r", report)

    def alive(self) -> bool:
        """Whether the zygote process still runs (and its socket is open)."""
        return not self.gen.dead and self.gen.proc.poll() is None

    def restart(self) -> None:
        """Replace a dead zygote (from the node's main thread: PDEATHSIG follows the
        thread that started it). Forks waiting for it go on with the new one."""
        old = self.gen
        if old.proc.poll() is None:
            old.proc.kill()
        with self.lock:
            if self.closed:
                return
        # Wait for the reader to see the end of the old socket (it fails the old pending
        # forks and reports the old agents) before forks go to the new zygote.
        with self.lock:
            if not self.lock.wait_for(lambda: old.dead, 5.0):
                # Something else holds its socket open: end the stream from our side.
                old.sock.shutdown(socket.SHUT_RDWR)
            self.lock.wait_for(lambda: old.dead)
        try:
            new = _Generation(self.sys_path)
        except OSError as exc:
            # Out of fds or processes, say: the node tries again (and counts the death).
            log.error("cannot start a new zygote: %s", exc)
            return
        with self.lock:
            self.gen = new
            self.lock.notify_all()
        threading.Thread(target=self._read, args=(new,), name="beamish-zygote",
                         daemon=True).start()
        old.proc.wait()
        old.close()

    def close(self) -> None:
        """Stop the zygote (its remaining children die with it)."""
        with self.lock:
            self.closed = True
            self.lock.notify_all()
            gen = self.gen
            if not gen.dead:
                try:
                    gen.sock.sendall(encode_zygote_request(ExitRequest()))
                    gen.exit_requested = True
                except OSError:
                    pass  # it is dead: its reader reports its agents as lost
            never_asked = not gen.asked
        if never_asked:
            # It has no child, so nothing to stop: do not wait for it to read the request,
            # which a zygote still importing (a node stopped as it started) does only once
            # done, a second or more later.
            gen.proc.kill()
        try:
            gen.proc.wait(5)
        except subprocess.TimeoutExpired:
            gen.proc.kill()
            gen.proc.wait()
        # Its sockets are closed once its reader is done with them (reporting lost agents).
        if not gen.reader_done.wait(30.0):
            log.warning("the zygote's reader did not finish within 30 s; closing anyway")
        gen.close()


def _read_frames(sock: socket.socket, decoder: FrameDecoder) -> list[Any] | None:
    """Read what the (readable) stream ``sock`` holds; the frames it completed, or None at
    its end.

    Raises:
        ProtocolError: a frame is not msgpack.
    """
    chunk = sock.recv(1 << 16)
    return decoder.feed(chunk) if chunk else None


def _may_be_child(pid: int, parent: int) -> bool:
    """Whether ``pid`` is a child of ``parent``, or already gone (a child that ended at
    once: its exit report follows)."""
    try:
        return bool(psutil.Process(pid).ppid() == parent)
    except psutil.NoSuchProcess:
        return True
    except psutil.Error:
        return False


def describe_exit(returncode: int | None) -> str:
    """Say how a process ended from its Popen-style return code."""
    if returncode is None:
        return "still running"
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exited with code {returncode}"
