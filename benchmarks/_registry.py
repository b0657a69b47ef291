"""A large registry for the listing measurements and tests: ``register_stopped`` writes
agent records straight into a running node's store (records only, status ``stopped``:
stand-ins for idle sessions, which have no process either), and ``python -m
benchmarks._registry DIR COUNT`` measures the node daemon's memory and its ``ps``/``tree``
answers with that many records.

    python -m benchmarks._registry /tmp/reg 100000
"""

from __future__ import annotations

import subprocess
import sys
import time

import psutil

from beamish.runtime._paths import NodePaths, read_node_info
from beamish.runtime._types import AgentStatus
from beamish.runtime.store import open_store
from beamish.runtime.store.protocol import Txn
from beamish.runtime.store.records import AgentRecord

STAND_IN = "tests.agents.basic:Counter"


def register_stopped(dir: str, count: int, prefix: str = "idle-") -> list[str]:
    """Write ``count`` stopped agents' records into the store of the node at ``dir``, in
    one transaction per 10,000, and return their names (``prefix`` + a zero-padded
    number, so name order is number order). Call it from a process that has not opened
    the store (LMDB allows one handle per process)."""
    info = read_node_info(NodePaths(dir))
    store = open_store(info.store, info.durability)
    names = [f"{prefix}{i:06d}" for i in range(count)]

    def batch(chunk: list[str]) -> None:
        def txn(t: Txn) -> None:
            now = time.time()
            for name in chunk:
                t.put_agent(AgentRecord(name, t.next_counter("agent_id"), cls=STAND_IN,
                                        status=AgentStatus.STOPPED, created=now,
                                        order=t.next_counter("order")))
        store.write(txn)
    try:
        for i in range(0, count, 10_000):
            batch(names[i:i + 10_000])
    finally:
        store.close()
    return names


def register_in_subprocess(dir: str, count: int, prefix: str = "idle-") -> None:
    """`register_stopped` in a child process (for a process that holds the store open)."""
    subprocess.run([sys.executable, "-c",
                    "import sys; from benchmarks._registry import register_stopped; "
                    "register_stopped(sys.argv[1], int(sys.argv[2]), sys.argv[3])",
                    dir, str(count), prefix], check=True)


def _rss(pid: int) -> str:
    """The process's RSS, and its anonymous part (the heap: Python objects) apart from the
    file-backed part (mostly LMDB's pages, mapped and shared with every process)."""
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("RssAnon", "RssFile", "RssShmem"):
                fields[key] = int(value.split()[0]) / 1024
    total = psutil.Process(pid).memory_info().rss / 1048576
    return (f"RSS {total:.1f} MB (anon {fields.get('RssAnon', 0):.1f}, file "
            f"{fields.get('RssFile', 0):.1f}, shmem {fields.get('RssShmem', 0):.1f})")


# Put on the daemon's PYTHONPATH: a thread in the node daemon (only there) that keeps
# writing its Python object counts to $BEAMISH_BENCH_OBJECTS.<pid>.
_REPORTER = """\
import os, sys
if os.environ.get("BEAMISH_BENCH_OBJECTS") and "--foreground" in sys.argv:
    import gc, threading, time
    def _report():
        path = f"{os.environ['BEAMISH_BENCH_OBJECTS']}.{os.getpid()}"
        while True:
            gc.collect()
            with open(path + ".tmp", "w") as f:
                f.write(f"{len(gc.get_objects())} {sys.getallocatedblocks()}")
            os.replace(path + ".tmp", path)
            time.sleep(0.2)
    threading.Thread(target=_report, daemon=True).start()
"""


def _objects(base: str, pid: int) -> str:
    """The daemon's latest object counts (written every 0.2 s by `_REPORTER`)."""
    time.sleep(0.5)
    try:
        with open(f"{base}.{pid}") as f:
            tracked, blocks = f.read().split()
    except OSError:
        return "objects: not reported"
    return f"{int(tracked):,} gc-tracked objects, {int(blocks):,} allocated blocks"


def main(dir: str, count: int) -> None:
    """Start a node at ``dir``, register ``count`` records, print the daemon's RSS and
    object counts and how long the listing answers take."""
    import os
    import tempfile

    from beamish.runtime import start_node
    hook = tempfile.mkdtemp(prefix="bm-objects-")
    with open(os.path.join(hook, "sitecustomize.py"), "w") as f:
        f.write(_REPORTER)
    base = os.path.join(hook, "objects")
    os.environ["BEAMISH_BENCH_OBJECTS"] = base
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [hook, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))])
    node = start_node(dir)
    try:
        pid = node.status().pid
        print(f"daemon, empty node: {_rss(pid)}; {_objects(base, pid)}")
        t0 = time.perf_counter()
        register_in_subprocess(dir, count)
        print(f"registered {count:,} records in {time.perf_counter() - t0:.2f} s; "
              f"daemon {_rss(pid)}; {_objects(base, pid)}")
        for what, fn in (("ps(limit=1000)", lambda: node.ps(limit=1000)),
                         ("ps_page(status=stopped, limit=1000)",
                          lambda: node.ps_page(status="stopped", limit=1000)),
                         ("ps_page(supervisor=root, limit=1000)",
                          lambda: node.ps_page(supervisor="root", limit=1000)),
                         ("tree(limit=100)", lambda: node.tree(limit=100)),
                         ("info", lambda: node.info("idle-000000")),
                         ("events", node.events),
                         ("ps() (all)", node.ps)):
            times = []
            for _ in range(3):
                t0 = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t0)
            print(f"{what:40s} best of 3 {min(times) * 1000:8.1f} ms; "
                  f"daemon after: {_rss(pid)}; {_objects(base, pid)}")
    finally:
        node.shutdown(timeout=60)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
