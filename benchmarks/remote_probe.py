"""A probe: a remote client's call over CURVE TCP against a local client's, same node,
same run (``python -m benchmarks.remote_probe [--samples N] [--blocks B]``).

    local call     `connect(dir)`: the message appended to the agent's mailbox by the
                   client itself, its reply read back (ipc doorbells, LMDB)
    remote call    `connect("tcp://127.0.0.1:PORT", keys=DIR)`: the request over TCP with
                   CURVE to the node's front door, which makes the same call on its
                   machine and sends the reply back
    local ping /   one control request (the node answers it from its control loop):
    remote ping    the bare cost of the round trip, over ipc and over TCP + the relay
    casts/s        sequential casts, each acknowledged once durable, local and remote

The blocks alternate local and remote so that a noisy machine's drift lands on both. It
prints one line per figure and a JSON object last.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

from beamish.runtime import connect, start_node
from beamish.runtime.cluster.keys import authorize, generate

from ._stats import latency_summary

ECHO = "beamish.benchmarks.agents:Echo"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _timed(fn: Callable[[], Any], n: int, out: list[int]) -> None:
    for _ in range(n):
        t0 = time.perf_counter_ns()
        fn()
        out.append(time.perf_counter_ns() - t0)


def run(samples: int, blocks: int) -> dict[str, Any]:
    """Start a node listening on 127.0.0.1 with fresh keys, measure, stop it."""
    base = tempfile.mkdtemp(prefix="bmr-", dir="/tmp")
    try:
        node_keys, client_keys = os.path.join(base, "nk"), os.path.join(base, "ck")
        authorize(node_keys, generate(client_keys).public)
        authorize(client_keys, generate(node_keys).public)
        address = f"tcp://127.0.0.1:{_free_port()}"
        config = os.path.join(base, "beamish.toml")
        with open(config, "w") as fh:
            fh.write(f'[cluster]\nlisten = "{address}"\nkeys = "{node_keys}"\n')
        local = start_node(os.path.join(base, "node"), config=config)
        try:
            remote = connect(address, keys=client_keys)
            try:
                return _measure(local, remote, samples, blocks)
            finally:
                remote.close()
        finally:
            local.shutdown()
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _measure(local: Any, remote: Any, samples: int, blocks: int) -> dict[str, Any]:
    local.spawn(ECHO, name="echo")
    msg = "x" * 100
    ns: dict[str, list[int]] = {k: [] for k in ("local call", "remote call", "local ping",
                                                "remote ping")}
    for who in (local, remote):  # warm-up: sockets made, pages touched
        for _ in range(200):
            who.call("echo", msg)
            who.status()
    per = max(1, samples // blocks)
    casts: dict[str, list[float]] = {"local": [], "remote": []}
    for block in range(blocks):
        order = [("local", local), ("remote", remote)]
        if block % 2:
            order.reverse()
        for label, who in order:
            _timed(lambda w=who: w.call("echo", msg), per, ns[f"{label} call"])
            _timed(lambda w=who: w._control.request("ping"), per // 4 or 1,
                   ns[f"{label} ping"])
            t0 = time.perf_counter()
            for _ in range(per // 4 or 1):
                who.cast("echo", msg)
            casts[label].append((per // 4 or 1) / (time.perf_counter() - t0))
    out: dict[str, Any] = {k: latency_summary(v) for k, v in ns.items()}
    out["casts_per_s"] = {k: sorted(v)[len(v) // 2] for k, v in casts.items()}
    out["remote_over_local_call_p50"] = (out["remote call"]["p50_us"]
                                         / out["local call"]["p50_us"])
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the probe and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=4000, help="calls per side")
    parser.add_argument("--blocks", type=int, default=8, help="alternating blocks")
    args = parser.parse_args(argv)
    res = run(args.samples, args.blocks)
    for key in ("local call", "remote call", "local ping", "remote ping"):
        s = res[key]
        print(f"{key:12} p50 {s['p50_us']:8.1f} us  p99 {s['p99_us']:8.1f} us  (n={s['n']})")
    print(f"casts/s      local {res['casts_per_s']['local']:8.0f}  remote "
          f"{res['casts_per_s']['remote']:8.0f}")
    print(f"remote call p50 / local call p50: {res['remote_over_local_call_p50']:.2f}")
    json.dump(res, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
