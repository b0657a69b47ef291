"""The ``cast_many`` scenario: batched casts against a loop of ``cast``, both
on beamish, in one run, alternating (and rotating who goes first) so that a noisy
machine's drift lands on both alike.

    one agent     20,000 small casts, until handled       target >= 100,000 msgs/s
    100 agents    one sender, round-robin, until handled   target >=  30,000 msgs/s

"Until handled": the clock runs from the first send until every agent has answered a
call with its count, which it can only do after handling every cast before that call.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

from . import agents
from ._stats import median

CALL_TIMEOUT_S = 60.0
ONE_AGENT_TARGET = 100_000  # target: cast_many of 20,000 small messages to one agent
ROUND_ROBIN_TARGET = 30_000  # target: one sender round-robin to 100 agents


def _log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


Sender = Callable[[Any, list[tuple[str, Any]]], None]


def _by_cast(node: Any, items: list[tuple[str, Any]]) -> None:
    for name, msg in items:
        node.cast(name, msg)


def _by_cast_many(node: Any, items: list[tuple[str, Any]]) -> None:
    node.cast_many(items)


SENDERS: dict[str, Sender] = {"cast_loop": _by_cast, "cast_many": _by_cast_many}


def _round(node: Any, names: list[str], n: int, send: Sender) -> dict[str, float]:
    """Send ``n`` small casts round-robin to ``names`` with ``send``; time it until every
    agent has handled its share."""
    before = [node.call(name, "count", CALL_TIMEOUT_S) for name in names]
    k = len(names)
    items = [(names[i % k], {"seq": i, "text": "ping"}) for i in range(n)]
    t0 = time.perf_counter()
    send(node, items)
    t_sent = time.perf_counter()
    after = [node.call(name, "count", CALL_TIMEOUT_S) for name in names]
    t1 = time.perf_counter()
    handled = sum(a - b for a, b in zip(after, before, strict=True))
    if handled != n:
        raise AssertionError(f"{n} casts sent, {handled} counted")
    return {"msgs_per_s": n / (t1 - t0), "send_s": t_sent - t0, "seconds": t1 - t0}


def cast_many(h: Any, sizes: Any) -> dict[str, Any]:
    """cast_many against a loop of cast: to one agent, and round-robin to many."""
    assert h.node is not None
    node = h.node
    n = getattr(sizes, "cast_many_messages", 20_000)
    repeats = getattr(sizes, "cast_many_repeats", 3)
    out: dict[str, Any] = {"messages": n, "repeats": repeats}
    for k, target in ((1, ONE_AGENT_TARGET), (getattr(sizes, "cast_many_agents", 100),
                                             ROUND_ROBIN_TARGET)):
        t0 = time.perf_counter()
        names = [node.spawn(agents.COUNTER, name=h.name("batch")).name for _ in range(k)]
        h.beamish_agents += k
        _log(f"[cast_many] {k} agent(s) spawned in {time.perf_counter() - t0:.2f} s")
        for send in SENDERS.values():  # warm-up: every agent has run a message
            _round(node, names, max(k, 200), send)
        rounds: dict[str, list[dict[str, float]]] = {key: [] for key in SENDERS}
        keys = list(SENDERS)
        for rep in range(repeats):
            shift = rep % len(keys)
            for key in keys[shift:] + keys[:shift]:
                rounds[key].append(_round(node, names, n, SENDERS[key]))
        entry: dict[str, Any] = {"agents": k}
        for key, rs in rounds.items():
            rates = [r["msgs_per_s"] for r in rs]
            entry[key] = {"msgs_per_s": median(rates), "msgs_per_s_min": min(rates),
                          "msgs_per_s_max": max(rates),
                          "send_s": median([r["send_s"] for r in rs]), "rounds": rs}
            _log(f"[cast_many] {k:3d} agent(s) {key:9s} {median(rates):10,.0f} msgs/s "
                 f"(min {min(rates):,.0f}, max {max(rates):,.0f}); sending took "
                 f"{entry[key]['send_s'] * 1000:.0f} ms of {median([r['seconds'] for r in rs]) * 1000:.0f} ms")
        figure = entry["cast_many"]["msgs_per_s"]
        what = (f"cast_many of {n:,} small messages to one agent, until handled"
                if k == 1 else f"one sender casting round-robin to {k} agents (cast_many), "
                               "until handled")
        entry["target"] = {"what": what, "target_msgs_per_s": target, "figure": figure,
                           "met": figure >= target}
        _log(f"[cast_many] target: {what} >= {target:,} msgs/s: "
             f"{'met' if figure >= target else 'missed'} ({figure:,.0f} msgs/s; a loop of "
             f"cast: {entry['cast_loop']['msgs_per_s']:,.0f})")
        out[f"agents_{k}"] = entry
        for name in names:
            node.delete(name)
        h.beamish_agents -= k
    return out
