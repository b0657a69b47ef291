"""The zygote: a preloaded interpreter that forks agent processes on request.

The node starts it once (``python -m beamish.runtime._zygote FD``) before it opens LMDB
or ZeroMQ; the zygote itself never opens either, so every agent opens its own after the
fork (py-lmdb and libzmq forbid sharing them across fork). It imports the agent-side
modules, runs ``gc.freeze()`` so the children's first collections do not touch (and
copy) inherited pages, then serves on a Unix socket:

    node -> zygote   {"op": "fork", "req": n, "boot": {...}}   -> {"op": "forked", "req": n, "pid": p}
    zygote -> node   {"op": "exited", "pid": p, "code": c}      (Popen-style: -signum)

It reaps its children itself (it is their parent) and reports every exit. It dies with
the node (PDEATHSIG), and its children die with it: no orphan agent ever.
"""

from __future__ import annotations

import gc
import os
import select
import signal
import socket
import sys
import traceback
from typing import Any

from ._osproc import FrameReader, _prctl, die_with_parent, returncode_from_status, send_frame


def _child(sock: socket.socket, wake_r: int, wake_w: int, boot: dict[str, Any],
           zygote_pid: int) -> None:
    code = 1
    try:
        sock.close()
        os.close(wake_r)
        os.close(wake_w)
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C goes to the node, which stops us
        die_with_parent(zygote_pid)
        from ._loop import agent_main
        code = agent_main(boot)
    except BaseException:  # noqa: BLE001 - the last resort of a child: report and exit
        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def serve(fd: int) -> None:
    """Serve fork requests on the inherited socket ``fd`` until the node closes it."""
    node_pid = os.getppid()
    die_with_parent(node_pid)
    sock = socket.socket(fileno=fd)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    # Preload what every agent needs, then freeze: children share these pages.
    import beamish.runtime._loop  # noqa: F401
    import pydantic  # noqa: F401
    _prctl()
    gc.collect()
    gc.freeze()
    reader = FrameReader(sock)
    me = os.getpid()
    while True:
        try:
            ready, _, _ = select.select([sock, wake_r], [], [])
        except InterruptedError:
            continue
        if wake_r in ready:
            try:
                os.read(wake_r, 4096)
            except BlockingIOError:
                pass
        _reap(sock)
        if sock not in ready:
            continue
        frames = reader.read()
        if frames is None:
            return  # the node is gone; PDEATHSIG takes the children
        for req in frames:
            if req.get("op") == "fork":
                for module in req.get("preload", []):
                    _preload(module)
                pid = os.fork()
                if pid == 0:
                    _child(sock, wake_r, wake_w, req["boot"], me)
                send_frame(sock, {"op": "forked", "req": req["req"], "pid": pid})
            elif req.get("op") == "exit":
                return


_preloaded: set[str] = set()


def _preload(module: str) -> None:
    """Import an agent module here once, so every later fork inherits it (as gunicorn's
    --preload): a spawn then skips the import. A module that fails to import is left to
    the child, which reports the error properly."""
    if module in _preloaded:
        return
    _preloaded.add(module)
    try:
        __import__(module)
    except BaseException:  # noqa: BLE001 - the child will import it again and report why
        return
    gc.collect()
    gc.freeze()


def _reap(sock: socket.socket) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        send_frame(sock, {"op": "exited", "pid": pid, "code": returncode_from_status(status)})


if __name__ == "__main__":
    sys.path[:0] = [p for p in os.environ.get("BEAMISH_SYS_PATH", "").split(os.pathsep)
                    if p and p not in sys.path]
    serve(int(sys.argv[1]))
