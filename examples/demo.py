"""`make demo`: start a node, spawn agents, crash some in every way, watch them come back
with their state, stop the node, run the quick benchmark (beamish vs plain threads), and end
with a short summary: what was shown and where the report, charts and figures are."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from beamish.runtime import RemoteError, start_node  # noqa: E402
from benchmarks._report import Written  # noqa: E402

SHOWN = ("20 agents, each in its own OS process, called and cast to",
         "an exception, os._exit(3), a SIGSEGV: each stayed in its agent, which kept its count",
         "counter-3 killed with SIGKILL, back with its state")


def summary(node_dir: str, written: Written | None, status: int = 0) -> list[str]:
    """The demo's closing lines: what it showed, then the absolute paths of what it left
    (the node's dir; the benchmark's report, charts and figures unless ``written`` is None,
    the benchmark skipped) and the benchmark's targets met or missed."""
    shown = [*SHOWN, "the quick benchmark: beamish vs plain threads, side by side"
             if written else "(the benchmark was skipped: --no-bench)"]
    lines = ["== summary", f"   shown:    {shown[0]};",
             *(f"             {what};" for what in shown[1:-1]), f"             {shown[-1]}",
             f"   node dir: {os.path.abspath(node_dir)} (the stopped node's tree, states and "
             "mailboxes)"]
    if written is None:
        return lines
    met = [v for v in written.targets if v.met]
    if written.targets:
        lines.append(f"   targets:  {len(met)} of {len(written.targets)} met in this run "
                     "(machine noise moves them; see the report)")
        lines.extend(f"             missed: {v.target.split(' (')[0]}"
                     for v in written.targets if not v.met)
    lines.append(f"   report:   {written.report} (tables and charts)")
    lines.extend(f"   {'charts:' if i == 0 else '':<9} {path}"
                 for i, path in enumerate(written.charts))
    if not written.charts:
        lines.append("   charts:   none (matplotlib is not importable: pip install beamish[bench])")
    lines.append(f"   figures:  {written.results}")
    if status:
        lines.append("   the benchmark reported a failure: see its lines above and the report")
    return lines


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="examples/demo.py", description=__doc__)
    parser.add_argument("--no-bench", action="store_true", help="skip the benchmark")
    parser.add_argument("--scenarios", default=None,
                        help="the benchmark's scenarios, a comma list (default: all)")
    parser.add_argument("--out", metavar="DIR", default=None,
                        help="where the benchmark writes (default benchmarks/results/<time>/)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the demo (see ``--help``); return the exit status."""
    args = _parse(sys.argv[1:] if argv is None else argv)
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
    status, written = 0, None
    if not args.no_bench:
        print("== the quick benchmark: beamish vs plain threads, side by side (about 100 s on 2 "
              "cores; a line per step)", flush=True)
        from benchmarks.__main__ import run
        status, written = run(["--quick", *(["--scenarios", args.scenarios] if args.scenarios
                                            else []), *(["--out", args.out] if args.out else [])])
        sys.stderr.flush()
    print("\n".join(summary(node_dir, written, status)))
    return status


if __name__ == "__main__":
    raise SystemExit(main())
