"""Small OS helpers: parent-death signals, identifying a process by pid plus start time
(pids are reused), the node's private datagram sockets, and process titles."""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import sys
import threading
import time

import setproctitle

PR_SET_PDEATHSIG = 1
_libc: ctypes.CDLL | None = None


def _prctl() -> ctypes.CDLL:
    # Resolved once (in the zygote, before forking): ctypes.util.find_library runs a
    # subprocess and would cost ~13 ms per spawned agent.
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def die_with_parent(expected_parent: int) -> None:
    """Make this process die (SIGKILL) when its parent does.

    Linux: ``prctl(PR_SET_PDEATHSIG)``. Elsewhere: a daemon thread that watches
    ``getppid()``. Either way, if the parent is already gone, exit now.
    """
    if sys.platform.startswith("linux"):
        _prctl().prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    else:
        def watch() -> None:
            while os.getppid() == expected_parent:
                time.sleep(0.5)
            os.kill(os.getpid(), signal.SIGKILL)
        threading.Thread(target=watch, name="beamish-parent-watch", daemon=True).start()
    if os.getppid() != expected_parent:
        os._exit(1)


def process_start_time(pid: int) -> float | None:
    """Return the start time of ``pid`` (for pid-reuse checks), or None if it is gone."""
    import psutil
    try:
        return float(psutil.Process(pid).create_time())
    except psutil.Error:
        return None


def returncode_from_status(status: int) -> int:
    """Turn a ``waitpid`` status into a Popen-style return code (``-signum`` if signalled)."""
    if os.WIFSIGNALED(status):
        return -os.WTERMSIG(status)
    return os.WEXITSTATUS(status) if os.WIFEXITED(status) else 1


def bind_datagram(path: str) -> socket.socket:
    """Bind a non-blocking Unix datagram socket at ``path``, mode 0600 like the node's other
    sockets, replacing a file left there by a node that was killed."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    os.chmod(path, 0o600)
    sock.setblocking(False)
    return sock


def set_title(title: str, comm: str) -> None:
    """Set this process's title (``ps``'s command line) and its short name (``top``'s
    COMMAND, ``/proc/PID/comm``: ``comm``, cut to 15 bytes by the kernel)."""
    setproctitle.setproctitle(title)
    setproctitle.setthreadtitle(comm)
