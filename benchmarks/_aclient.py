"""The ``aclient`` scenario: the native asyncio client, on beamish, in one run.

    concurrency   200 concurrent ``acall`` s to 200 agents whose handlers each await
                  1 s: seconds until every reply is in        target: about 1 s (<= 1.25 s)
    the old path  20 such calls through ``asyncio.to_thread(node.call)`` (what ``acall``
                  was: the loop's default thread pool) against 20 native ``acall`` s
    round trip    one coroutine's ``acall`` in a loop against the sync ``call``, p50/p99

Everything runs in one event loop; the native and thread-pool rounds alternate, and so
do the round-trip blocks, so that a noisy machine's drift lands on both alike.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from typing import Any

from . import agents
from ._stats import latency_summary, median

HANDLER_S = 1.0  # how long each handler awaits
CALL_TIMEOUT_S = 120.0
TARGET_S = 1.25  # "about 1 s" for handlers of 1 s: the rest is the client's and the agents' cost
OLD_PATH_CALLS = 20  # 20 concurrent acalls took 4.03 s through to_thread before the native client


def _log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


async def _native(node: Any, names: list[str], nap: float) -> float:
    """Seconds for one ``acall(name, nap)`` to each of ``names``, all at once."""
    t0 = time.perf_counter()
    got = await asyncio.gather(*(node.acall(n, nap, CALL_TIMEOUT_S) for n in names))
    seconds = time.perf_counter() - t0
    if got != [nap] * len(names):
        raise AssertionError(f"wrong replies: {got[:5]}...")
    return seconds


async def _to_thread(node: Any, names: list[str], nap: float) -> float:
    """`_native` through ``asyncio.to_thread(node.call)``, as ``acall`` used to run."""
    t0 = time.perf_counter()
    got = await asyncio.gather(*(asyncio.to_thread(node.call, n, nap, CALL_TIMEOUT_S)
                                 for n in names))
    seconds = time.perf_counter() - t0
    if got != [nap] * len(names):
        raise AssertionError(f"wrong replies: {got[:5]}...")
    return seconds


async def _round_trips(node: Any, name: str, samples: int,
                       blocks: int) -> dict[str, list[int]]:
    """Sequential ``acall`` and ``call`` latencies (ns), in alternating blocks."""
    out: dict[str, list[int]] = {"acall": [], "call": []}
    per = max(1, samples // blocks)
    for block in range(blocks):
        for key in (("acall", "call") if block % 2 == 0 else ("call", "acall")):
            for _ in range(per):
                t0 = time.perf_counter_ns()
                if key == "acall":
                    await node.acall(name, 0, CALL_TIMEOUT_S)
                else:
                    node.call(name, 0, CALL_TIMEOUT_S)
                out[key].append(time.perf_counter_ns() - t0)
    return out


async def _run(node: Any, names: list[str], repeats: int, samples: int,
               blocks: int) -> dict[str, Any]:
    await _native(node, names, 0.0)  # warm-up: every agent has run a message
    await _to_thread(node, names[:OLD_PATH_CALLS], 0.0)
    few = names[:OLD_PATH_CALLS]
    many: list[float] = []
    native_few: list[float] = []
    old_few: list[float] = []
    for rep in range(repeats):
        many.append(await _native(node, names, HANDLER_S))
        _log(f"[aclient] {len(names)} concurrent acalls of {HANDLER_S:g} s: {many[-1]:.3f} s")
        pair = [("native", _native), ("to_thread", _to_thread)]
        for key, run in pair if rep % 2 == 0 else pair[::-1]:
            seconds = await run(node, few, HANDLER_S)
            (native_few if key == "native" else old_few).append(seconds)
        _log(f"[aclient] {len(few)} concurrent calls of {HANDLER_S:g} s: native "
             f"{native_few[-1]:.3f} s, through to_thread {old_few[-1]:.3f} s")
    lat = await _round_trips(node, names[0], samples, blocks)
    workers = min(32, (os.cpu_count() or 1) + 4)  # ThreadPoolExecutor's default, documented
    return {"many": many, "native_few": native_few, "old_few": old_few, "latency": lat,
            "default_workers": workers}


def aclient(h: Any, sizes: Any) -> dict[str, Any]:
    """The native asyncio client: concurrency, against the old thread-pool path, and its
    round trip against the sync call."""
    assert h.node is not None
    node = h.node
    quick = getattr(sizes, "call_samples", 0) < 10_000
    n = 200
    repeats = 1 if quick else 5
    samples, blocks = (1000, 4) if quick else (5000, 10)
    t0 = time.perf_counter()
    names = [node.spawn(agents.NAPPER, name=h.name("nap")).name for _ in range(n)]
    h.beamish_agents += n
    _log(f"[aclient] {n} agents spawned in {time.perf_counter() - t0:.2f} s")
    try:
        got = asyncio.run(_run(node, names, repeats, samples, blocks))
    finally:
        for name in names:
            node.delete(name)
        h.beamish_agents -= n
    figure = median(got["many"])
    what = (f"{n} concurrent acalls to {n} agents whose handlers each await "
            f"{HANDLER_S:g} s, until every reply is in")
    out: dict[str, Any] = {
        "agents": n, "handler_s": HANDLER_S, "repeats": repeats,
        "concurrent": {"calls": n, "seconds": figure, "rounds": got["many"]},
        "old_path": {"calls": OLD_PATH_CALLS, "native_seconds": median(got["native_few"]),
                     "to_thread_seconds": median(got["old_few"]),
                     "native_rounds": got["native_few"], "to_thread_rounds": got["old_few"],
                     "default_workers": got["default_workers"]},
        "round_trip": {k: latency_summary(v) for k, v in got["latency"].items()},
        "target": {"what": what, "target_s": TARGET_S, "figure": figure,
                   "met": figure <= TARGET_S},
    }
    _log(f"[aclient] target: {what} <= {TARGET_S:g} s: "
         f"{'met' if figure <= TARGET_S else 'missed'} ({figure:.3f} s)")
    return out


def table_rows(entry: Any) -> list[str]:
    """The scenario's rows of the report's main table (none if it did not run)."""
    if not isinstance(entry, dict) or "target" not in entry:
        return []
    c, old, rt = entry["concurrent"], entry["old_path"], entry["round_trip"]
    a, s = rt["acall"], rt["call"]
    return [
        f"| asyncio: {c['calls']} concurrent acalls, handlers await {entry['handler_s']:g} s "
        f"| seconds | {c['seconds']:.3f} | — | — | |",
        f"| asyncio: {old['calls']} concurrent acalls, handlers await "
        f"{entry['handler_s']:g} s | seconds | {old['native_seconds']:.3f} | — | — | "
        f"through asyncio.to_thread (the old acall, {old['default_workers']} workers): "
        f"{old['to_thread_seconds']:.3f} s |",
        f"| asyncio: acall round trip, one coroutine | p50 / p99 µs | {a['p50_us']:.0f} / "
        f"{a['p99_us']:.0f} | — | — | sync call, same run: {s['p50_us']:.0f} / "
        f"{s['p99_us']:.0f} |",
    ]


def target_rows(entry: Any) -> list[str]:
    """The scenario's row of the report's targets table (none if it did not run)."""
    if not isinstance(entry, dict) or "target" not in entry:
        return []
    t = entry["target"]
    rounds = ", ".join(f"{r:.2f}" for r in entry["concurrent"]["rounds"])
    return [f"| asyncio: {t['what']}: <= {t['target_s']:g} s | {t['figure']:.3f} s "
            f"(rounds: {rounds}) | {'**met**' if t['met'] else '**missed**'} |"]
