"""`Node.drain` and ``beamish node drain``: ask a cluster node to hand its shards off to
the others and stop (``node/cluster_drain.py`` does it on the node), print its progress,
and end when it is over: exit 0 once every shard was handed off and the node stopped, 1
when the drain ran out of time (`DrainIncomplete`; the node stopped all the same) or the
node could not be asked, 2 when it is not in a cluster. It blocks until then, so it fits
a Kubernetes ``preStop`` hook (deploy/)."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

from .._validation import check_timeout
from ..cluster.drain import DrainStatus, outcome_line, progress_line
from ..errors import NodeNotRunning

POLL_S = 0.25  # how often the client asks for progress
REQUEST_TIMEOUT_S = 10.0  # one progress request (the node answers at once)
STOP_WAIT_S = 60.0  # after the drain, how long a local client waits for the node to exit


def drain_node(ask: Callable[[float], Any], where: str, timeout: float,
               on_progress: Callable[[DrainStatus], None] | None = None) -> DrainStatus:
    """Start a node's drain and follow it until it is over; return its final status (the
    node stops then). ``ask(timeout)`` sends ``{"op": "drain", "timeout"}`` to the node at
    ``where`` and returns the answer's value; ``on_progress`` gets each change.

    Raises:
        ConfigError: not a cluster node, or a bad ``timeout``.
        NodeNotRunning: the node stopped answering before it told the outcome.
    """
    timeout = check_timeout(timeout)
    deadline = time.monotonic() + timeout + REQUEST_TIMEOUT_S + STOP_WAIT_S
    shown: tuple[int, int, bool] | None = None
    while True:
        try:
            st = DrainStatus.from_wire(ask(timeout))
        except NodeNotRunning:
            raise NodeNotRunning(f"the node at {where} stopped answering before its drain "
                                 "was over (stopped by someone else?): see its log") from None
        seen = (st.shards_left, st.replicated, st.stalled)
        if on_progress is not None and (seen != shown or st.final):
            shown = seen
            on_progress(st)
        if st.final:
            return st
        if time.monotonic() > deadline:  # the node's own timeout should have ended it
            raise NodeNotRunning(f"the node at {where} still drains after {timeout:g} s "
                                 "and did not end its drain: see its log")
        time.sleep(POLL_S)


def add_parser(node_sub: argparse._SubParsersAction[argparse.ArgumentParser],
               common: argparse.ArgumentParser) -> None:
    """Add ``beamish node drain`` to ``beamish node``'s sub-commands."""
    p = node_sub.add_parser(
        "drain", parents=[common],
        help="hand this cluster node's shards to the others, then stop it (a preStop hook)")
    p.add_argument("--timeout", type=float, default=120.0, metavar="S",
                   help="give up handing off after S seconds; the node stops all the same "
                        "and the exit code is 1 (default 120)")
    p.add_argument("--json", action="store_true",
                   help="print each progress report and the outcome as a JSON line")


def run(drain: Callable[..., DrainStatus], where: str, args: argparse.Namespace) -> int:
    """``beamish node drain``: print progress, then the outcome; 0 once drained (exit 1
    and 2 come from `DrainIncomplete` and `ConfigError`, raised). ``drain`` is
    `Node.drain` of the node at ``where``."""
    def show(st: DrainStatus) -> None:
        if args.json:
            print(json.dumps(st.to_wire()), flush=True)
        else:
            print(outcome_line(st) if st.final else progress_line(st), flush=True)
    drain(args.timeout, show)
    if not args.json:
        print(f"node at {where} stopped", flush=True)
    return 0
