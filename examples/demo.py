"""`make demo`: start a node, spawn agents, crash some in every way, watch them come back
with their state, run the quick isolation benchmark, print the result, stop the node."""

from __future__ import annotations

import os
import signal
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from beamish.runtime import RemoteError, start_node  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    """Run the demo (``--no-bench``: skip the benchmark); return the exit status."""
    argv = sys.argv[1:] if argv is None else argv
    node_dir = tempfile.mkdtemp(prefix="bm-demo-", dir="/tmp")
    print(f"== starting a node in {node_dir}")
    node = start_node(node_dir)
    try:
        t = time.perf_counter()
        refs = [node.spawn("examples.agents:Counter", name=f"counter-{i}", args={"start": i})
                for i in range(20)]
        for ref in refs:
            ref.call("incr")
        print(f"== spawned 20 agents, each in its own process, and called each once "
              f"({time.perf_counter() - t:.2f} s)")
        for ref in refs:
            for _ in range(5):
                ref.cast("incr")
        print("== cast 100 messages (each committed to its agent's mailbox in LMDB first)")
        print("== poison messages, each to its own agent (others keep serving):")
        for how, msg in (("a Python exception", "raise"), ("os._exit(3)", "exit"),
                         ("SIGSEGV in C code", "segv")):
            faulty = node.spawn("examples.agents:Faulty", name=f"faulty-{msg}")
            faulty.call("incr")
            try:
                faulty.call(msg, timeout=10)
            except RemoteError as exc:
                f = exc.failure
                print(f"   {how}: RemoteError({exc.type}) after {f.attempt} attempt(s), "
                      f"kind {f.kind}; the agent still counts {faulty.call('get')}")
        pid = node.info("counter-3").pid
        os.kill(pid, signal.SIGKILL)
        print(f"   SIGKILL of counter-3 (pid {pid}) from outside")
        print(f"== counter-3 answers again with its state: {node.call('counter-3', 'get')} "
              "(was 3, +1 call, +5 casts = 9)")
        print("== beamish ps")
        for info in node.ps()[:4] + node.ps()[-2:]:
            print(f"   {info.name:<11} pid={info.pid} status={info.status} "
                  f"restarts={info.restarts} processed={info.processed} "
                  f"last_failure={info.last_failure.kind if info.last_failure else '-'}")
    finally:
        node.shutdown()
    print("== node stopped; its tree, states and mailboxes stay in", node_dir)
    if "--no-bench" in argv:
        return 0
    print("== the quick isolation benchmark: beamish vs plain threads (about a minute)")
    from benchmarks.__main__ import main as bench_main
    return bench_main(["--quick"])


if __name__ == "__main__":
    raise SystemExit(main())
