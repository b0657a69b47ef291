"""A subprocess running the plain-threads runtime, for the faults that can end its whole
process (``os._exit``, SIGSEGV, SIGKILL) and for ``kill -9``: the parent
(`._isolation`) reads one JSON event per line on stdout and sees how far it got.

``python -m benchmarks._threads_child fault FAULT CASTS SPIN_S``
``python -m benchmarks._threads_child kill9-load`` / ``kill9-restart``
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from typing import Any

from . import agents
from ._isolation import THREAD_TRIGGERS, fault_trial
from .threads_runtime import ThreadsNode

BOMB_HEADROOM_MB = 200  # the same budget as beamish's Limits(memory_mb=200)


def emit(event: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(event, default=str) + "\n")
    sys.stdout.flush()


def fault(name: str, casts: int, spin_s: float) -> None:
    trigger: Any = THREAD_TRIGGERS[name]
    if trigger == "bounded-spin":
        trigger = {"spin": spin_s}
        emit({"event": "note", "text": f"a thread cannot be killed: the loop is bounded to "
                                       f"{spin_s:g} s so the run ends"})
    node = ThreadsNode()
    try:
        if name == "memory_bomb":
            # A thread cannot have its own memory limit; the closest is one for the whole
            # process (what a container limit would be). Without one the bomb grows until
            # the kernel's OOM killer ends the process.
            import psutil
            vms = psutil.Process().memory_info().vms
            cap = vms + BOMB_HEADROOM_MB * 2**20
            resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
            emit({"event": "note", "text": f"RLIMIT_AS on the whole process: its size + "
                                           f"{BOMB_HEADROOM_MB} MiB"})

        def kill(pid: int) -> None:
            emit({"event": "kill_me", "pid": pid})
            time.sleep(30)  # the parent SIGKILLs this process (the agent's pid is ours)

        fault_trial(node, name, trigger, casts=casts, emit=emit, kill=kill)
    finally:
        node.shutdown(timeout=10)


def kill9_load() -> None:
    node = ThreadsNode()
    try:
        node.spawn(agents.COUNTER, name="k9")
        n = 0
        while True:
            node.cast("k9", {"seq": n})
            n += 1
            emit({"event": "acked", "n": n})
    finally:
        node.shutdown(timeout=10)


def kill9_restart() -> None:
    node = ThreadsNode()
    try:
        node.spawn(agents.COUNTER, name="k9")  # the same name, in a new process
        emit({"event": "count", "count": node.call("k9", "count", 30.0)})
    finally:
        node.shutdown(timeout=10)


def main(argv: list[str]) -> int:
    if argv[0] == "fault":
        fault(argv[1], int(argv[2]), float(argv[3]))
    elif argv[0] == "kill9-load":
        kill9_load()
    elif argv[0] == "kill9-restart":
        kill9_restart()
    else:
        raise SystemExit(f"unknown mode {argv[0]!r}")
    return 0


if __name__ == "__main__":
    code = main(sys.argv[1:])
    sys.stdout.flush()
    os._exit(code)  # abandoned agent threads (a bounded spin) must not hold the exit
