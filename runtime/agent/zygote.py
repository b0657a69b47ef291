"""The zygote: a preloaded interpreter that forks agent processes on request.

The node starts it (``python -m beamish.runtime.agent.zygote FD READY_FD``; again if it dies)
before it opens LMDB or ZeroMQ; the zygote itself never opens either, so every agent opens its own
after the fork (py-lmdb and libzmq forbid sharing them across fork). It imports the
agent-side modules, runs ``gc.freeze()`` so the children's first collections do not touch
(and copy) inherited pages, then serves on a Unix socket:

    node -> zygote   {"op": "fork", "req": n, "boot": {...}}   -> {"op": "forked", "req": n, "pid": p}
                                                                 or {"op": "refused", "req": n, "module": m, "error": why}
    zygote -> node   {"op": "exited", "pid": p, "code": c}      (Popen-style: -signum)

(each a length-prefixed msgpack frame; built and parsed in ``messaging/wire.py``).

A fork request names modules to preload. Each is imported in a throwaway child first
(`_probe`): one whose import kills that child is refused, naming how, and never reaches
the zygote; after every import the zygote's own signal dispositions are restored.

Agents report "ready" on the inherited datagram socket ``READY_FD`` (one write each),
not on a ZeroMQ socket: the report is on every spawn's critical path.

A few **warm** children wait forked ahead of time: each has done the setup that does not
depend on which agent it becomes (its own LMDB env and ZeroMQ context, opened after the
fork, in the child), and blocks reading its boot record from a pipe. A fork request hands
the boot to a warm child (no fork on the request's path), and the zygote forks the
replacements after answering, several back to back once the pool runs low. A warm child is not an agent until it gets its boot: its
exit is not reported, and the pool is dropped (and refilled) whenever a preload imports
something new, so warm children always hold what a cold fork would.

It reaps its children itself (it is their parent) and reports every agent's exit. It dies
with the node (PDEATHSIG), and its children die with it: no orphan agent ever.
"""

from __future__ import annotations

import gc
import os
import select
import signal
import socket
import sys
import time
import traceback

from .._osproc import _prctl, die_with_parent, returncode_from_status, set_title
from .._types import WireMap
from ..messaging.wire import (
    Exited,
    ExitRequest,
    Forked,
    ForkRequest,
    FrameDecoder,
    Refused,
    ZygoteFrame,
    encode_frame,
    encode_zygote_frame,
    parse_zygote_request,
)
from ..store.records import NodeFields
from .logfile import StampedWriter, warm_up

WARM = 4  # warm children kept ready at most; each spawn uses one
# Refilled (up to WARM) once this many or fewer are left, the forks back to back: every
# fork makes the zygote's pages copy-on-write again, and the zygote's own writes between
# two forks (serving a request) each copy a page, so a fork right after each request
# copied ~180 pages per spawn, and these bursts ~130 (measured with 4 spawning clients).
WARM_REFILL_AT = 2


def _child_signals(zygote_pid: int) -> None:
    # Its own process group: the processes an agent starts share it, and are killed with
    # it when it exits (kill_group), instead of outliving it.
    os.setpgid(0, 0)
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C goes to the node, which stops us
    die_with_parent(zygote_pid)


def _child(close: list[int], boot: WireMap | None, boot_fd: int | None,
           template: NodeFields, zygote_pid: int) -> None:
    """The forked process: cold (``boot`` given) or warm (prepare, then read the boot)."""
    code = 1
    try:
        for fd in close:
            os.close(fd)
        _child_signals(zygote_pid)
        from .loop import Prepared, agent_main
        prepared = Prepared(template)
        if boot is None:
            warm_up(template.dir)  # the log's setup, off the spawn's path
            assert boot_fd is not None
            boot = _read_boot(boot_fd)
            if boot is None:
                return  # the zygote retired us before we were needed
        code = agent_main(boot, prepared)
    except BaseException:  # noqa: BLE001 - the last resort of a child: report and exit
        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _read_boot(fd: int) -> WireMap | None:
    decoder = FrameDecoder()
    while True:
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return None
        frames = decoder.feed(chunk)
        if frames:
            os.close(fd)
            value: WireMap = frames[0]
            return value


class _Zygote:
    def __init__(self, sock: socket.socket, ready_fd: int) -> None:
        self.sock = sock
        self.ready_fd = ready_fd
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        self.me = os.getpid()
        self.template: NodeFields | None = None  # the node fields the warm children have
        self.warm: list[tuple[int, int]] = []  # (pid, boot pipe's write end), oldest first
        self.quiet: set[int] = set()  # warm or retired children: their exits are not agents'
        self.warm_ok = True  # off for good once a warm child died unused (cold forks then)
        self.agents: set[int] = set()  # live agents' pids (each leads its process group)

    def fork(self, boot: WireMap | None) -> tuple[int, int | None]:
        """Fork a child: cold with ``boot``, or warm (returns the boot pipe's write end)."""
        assert self.template is not None
        boot_r = boot_w = None
        if boot is None:
            boot_r, boot_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            close = [self.sock.fileno(), self.wake_r, self.wake_w,
                     *(w for _, w in self.warm)]
            if boot_w is not None:
                close.append(boot_w)
            _child(close, boot, boot_r, self.template, self.me)
        if boot_r is not None:
            os.close(boot_r)
        return pid, boot_w

    def spawn(self, boot: WireMap) -> int:
        boot = {**boot, "ready_fd": self.ready_fd}
        template = NodeFields.from_wire(boot)
        if template != self.template:
            self.retire()
            self.template = template
        while self.warm:
            pid, boot_w = self.warm.pop(0)
            self.quiet.discard(pid)  # an agent from now on: its exit is reported
            try:
                _write_all(boot_w, encode_frame(boot))
            except OSError:
                self.quiet.add(pid)  # it died unused: not an agent, try the next one
                continue
            finally:
                os.close(boot_w)
            self.agents.add(pid)
            return pid
        pid = self.fork(boot)[0]
        self.agents.add(pid)
        return pid

    def refill(self) -> None:
        if len(self.warm) > WARM_REFILL_AT:
            return
        while self.warm_ok and self.template is not None and len(self.warm) < WARM:
            pid, boot_w = self.fork(None)
            assert boot_w is not None
            self.quiet.add(pid)
            self.warm.append((pid, boot_w))

    def retire(self) -> None:
        """Drop the warm children (they lack a module just imported, or the node's fields
        changed): closing the boot pipe makes each exit without becoming an agent."""
        for _, boot_w in self.warm:
            os.close(boot_w)
        self.warm.clear()

    def kill_agents(self) -> None:
        """Kill every live agent's process group: the node is going, and nothing an agent
        started may outlive it."""
        for pid in self.agents:
            kill_group(pid)

    def reap(self) -> None:
        while True:
            try:
                # Peek first: while its zombie holds the pid, the group id cannot be reused,
                # so killing the group cannot hit another process.
                info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                return
            if info is None or info.si_pid == 0:
                return
            kill_group(info.si_pid)  # what the child started dies with it
            pid, status = os.waitpid(info.si_pid, 0)
            self.agents.discard(pid)
            if pid in self.quiet:
                self.quiet.discard(pid)
                for entry in [e for e in self.warm if e[0] == pid]:
                    # A warm child died before it was needed: something in its setup
                    # fails, so stop forking ahead (cold forks report such errors).
                    self.warm_ok = False
                    self.warm.remove(entry)
                    os.close(entry[1])
                continue
            self.send(Exited(pid, returncode_from_status(status)))


    def find_vanished(self) -> None:
        """Report agents the kernel reaped behind our back: while an import had SIGCHLD
        ignored, a child that ended left no status to wait for. Its exit code is lost;
        it is reported as killed, so its supervisor restarts it."""
        for pid in list(self.agents) + list(self.quiet):
            try:
                os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
                continue  # still our child (running, or a zombie reap() takes)
            except ChildProcessError:
                pass
            self.agents.discard(pid)
            if pid in self.quiet:
                self.quiet.discard(pid)
                continue
            print(f"beamish zygote: agent pid {pid} ended while an import ignored SIGCHLD; "
                  "its exit status is lost", file=sys.stderr, flush=True)
            self.send(Exited(pid, -signal.SIGKILL))

    def send(self, frame: ZygoteFrame) -> None:
        """Send ``frame`` to the node (blocking)."""
        self.sock.sendall(encode_zygote_frame(frame))


def kill_group(pid: int) -> None:
    """SIGKILL what is left of the process group that child ``pid`` led (the processes it
    started and did not take out of its group); nothing if none is left."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass  # no process left in the group (or it is not ours: never signal it)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _zygote_signals(z: _Zygote) -> None:
    """Install the signal dispositions the zygote depends on. Run again after every
    import of user code: a module that set SIGCHLD to ignored would make the kernel reap
    agents behind the zygote's back (no exit reported, no restart)."""
    signal.set_wakeup_fd(z.wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


# Objects of each obmalloc size class the zygote allocates and keeps before it forks (see
# fill_pools): 128 took ~200 KiB off an idle agent's USS, 32 ~130 KiB, 2,048 no more than 128.
POOL_FILL = 128
_pool_fill: list[object] = []


def fill_pools(per_class: int = POOL_FILL) -> None:
    """Take the free slots of the zygote's partly used obmalloc pools with objects it keeps.

    An agent's new small objects would go to those slots first (CPython's allocator fills
    its partly used pools before fresh ones), each write copying a page the zygote shares
    with it; with the slots taken, they go to fresh pools, packed together. Costs the
    zygote ~1 MiB (once, and again after each import of an agent module).
    """
    fill: list[object] = [float(i) + 0.5 for i in range(per_class)]  # 24 bytes: the 32 class
    for size in range(48, 513, 16):
        fill.extend(bytes(size - _BYTES_HEADER) for _ in range(per_class))
    _pool_fill.append(fill)


# A bytes object of n bytes takes n + 33 of obmalloc (its header and the trailing NUL).
_BYTES_HEADER = sys.getsizeof(b"")


def serve(fd: int, ready_fd: int) -> None:
    """Serve fork requests on the inherited socket ``fd`` until the node closes it;
    agents write their ready reports to the inherited datagram socket ``ready_fd``."""
    node_pid = os.getppid()
    die_with_parent(node_pid)
    # Named in ps/top; what it prints (and its warm children, until each opens its agent's
    # log) goes to the node's log with a timestamp per line.
    set_title(f"beamish zygote (node pid {node_pid})", "beamish-zygote")
    sys.stdout, sys.stderr = StampedWriter(1, None), StampedWriter(2, None)
    sock = socket.socket(fileno=fd)
    os.set_inheritable(ready_fd, False)  # agents get it by fork, not their own exec's
    z = _Zygote(sock, ready_fd)
    _zygote_signals(z)
    # Preload what every agent needs, then freeze: children share these pages.
    import pydantic  # noqa: F401

    import beamish.runtime.agent.loop  # noqa: F401
    _prctl()
    gc.collect()
    fill_pools()
    gc.freeze()
    decoder = FrameDecoder()
    while True:
        try:
            ready, _, _ = select.select([sock.fileno(), z.wake_r], [], [])
        except InterruptedError:
            continue
        if z.wake_r in ready:
            try:
                os.read(z.wake_r, 4096)
            except BlockingIOError:
                pass
        z.reap()
        if sock.fileno() not in ready:
            continue
        chunk = sock.recv(1 << 16)
        if not chunk:
            z.kill_agents()
            return  # the node is gone; PDEATHSIG takes the children
        for msg in decoder.feed(chunk):
            req = parse_zygote_request(msg)
            if isinstance(req, ForkRequest):
                _serve_fork(z, req, node_pid)
            elif isinstance(req, ExitRequest):
                z.kill_agents()
                return
        z.refill()  # after answering: the replacement's fork is off the spawn's path


def _serve_fork(z: _Zygote, req: ForkRequest, node_pid: int) -> None:
    """Preload the request's modules (each tried in a throwaway child first), then fork
    the agent; or refuse it, naming the module whose import kills its process."""
    imported = False
    for module in req.preload:
        outcome = _preload(z, module)
        if isinstance(outcome, str):
            z.send(Refused(req.req, module, outcome))
            if imported:
                z.retire()
            _after_import(z, node_pid)
            return
        imported = imported or outcome
    if imported:
        z.retire()
        _after_import(z, node_pid)
    pid = z.spawn(req.boot)
    z.send(Forked(req.req, pid))


def _after_import(z: _Zygote, node_pid: int) -> None:
    # Undo what an import may have changed that the zygote relies on, and hear the exits
    # of agents that ended while it (or its probe) ran.
    _zygote_signals(z)
    die_with_parent(node_pid)
    z.reap()
    z.find_vanished()


_preloaded: set[str] = set()
# Modules whose trial import raised or was too slow: left to each agent's own process, and
# never probed again (a probe blocks this single-threaded server: forks and reaps wait).
_not_preloaded: set[str] = set()
PROBE_TIMEOUT_S = 45.0  # a slower trial import is not preloaded (the agent imports it)


def _preload(z: _Zygote, module: str) -> bool | str:
    """Import an agent module here once, so every later fork inherits it (as gunicorn's
    --preload): a spawn then skips the import.

    User code must not take the zygote down, so the module is first imported in a
    throwaway child (`_probe`): only if that child survives is it imported here. Returns
    whether it imported anything, or why the module cannot be used (the trial import
    killed its process). A module whose import merely raises is left to the agent's own
    process, which reports the error properly.
    """
    if module in _preloaded or module in _not_preloaded:
        return False
    if module in sys.modules:
        _preloaded.add(module)
        return False
    verdict = _probe(z, module)
    if verdict == "raised":
        _not_preloaded.add(module)
        return False
    if verdict != "ok":
        return verdict  # it kills its importer: probed again at each spawn, refused each time
    _preloaded.add(module)
    try:
        __import__(module)
    except BaseException:  # noqa: BLE001 - the child will import it again and report why
        return True  # a failed import can leave submodules behind
    gc.collect()
    fill_pools()
    gc.freeze()
    return True


def _probe(z: _Zygote, module: str) -> str:
    """Import ``module`` in a forked child; return "ok", "raised" (an exception, or over
    `PROBE_TIMEOUT_S`: left to the agent's own process), or a sentence saying how the
    import killed the child."""
    verdict_r, verdict_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            for fd in (z.sock.fileno(), z.wake_r, z.wake_w, z.ready_fd, verdict_r,
                       *(w for _, w in z.warm)):
                os.close(fd)
            _child_signals(z.me)
            try:
                __import__(module)
                os.write(verdict_w, b"k")
            except BaseException:  # noqa: BLE001 - an exception is the agent's to report
                os.write(verdict_w, b"r")
        except BaseException:  # noqa: BLE001 - the last resort of a child: report and exit
            traceback.print_exc()
            code = 1
        finally:
            os._exit(code)
    os.close(verdict_w)
    try:
        verdict = _read_verdict(z, pid, verdict_r, PROBE_TIMEOUT_S)
    finally:
        os.close(verdict_r)
    kill_group(pid)  # what its import started dies with it (its zombie holds the group)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    _, status = os.waitpid(pid, 0)
    z.reap()  # agents that exited while we watched the probe (their wake-up was read)
    if verdict == b"k":
        return "ok"
    if verdict == b"r":
        return "raised"
    if verdict is None:
        # Slow is not hostile: the agent's own process imports it, under its start timeout.
        print(f"beamish zygote: the trial import of {module!r} took over "
              f"{PROBE_TIMEOUT_S:g} s; not preloading it", file=sys.stderr, flush=True)
        return "raised"
    code = returncode_from_status(status)
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"importing it killed the process with {name}"
    return f"importing it ended the process: exited with code {code}"


def _read_verdict(z: _Zygote, pid: int, fd: int, timeout: float) -> bytes | None:
    """The probe's one-byte verdict; b"" if it died without one, None on timeout.

    Its exit is watched too (SIGCHLD wakes us): a process its import started may hold
    the pipe open after the probe itself died."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        try:
            ready, _, _ = select.select([fd, z.wake_r], [], [], left)
        except InterruptedError:
            continue
        if fd in ready:
            return os.read(fd, 1)
        try:
            os.read(z.wake_r, 4096)
        except BlockingIOError:
            pass
        info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        if info is not None and info.si_pid == pid:
            ready, _, _ = select.select([fd], [], [], 0)
            return os.read(fd, 1) if ready else b""


if __name__ == "__main__":
    sys.path[:0] = [p for p in os.environ.get("BEAMISH_SYS_PATH", "").split(os.pathsep)
                    if p and p not in sys.path]
    serve(int(sys.argv[1]), int(sys.argv[2]))
