"""``beamish top``: the awake agents sorted by CPU, memory, mailbox depth or restarts,
refreshing (rich), from the node's ``stats`` snapshots (`NodeStats`).

CPU% and messages/s are rates: each refresh compares the new snapshot with the one
before (`top_rows`, pure); the first reading has none (``--once`` takes two readings
``--interval`` apart, then prints one table).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from ..node.stats import AgentStats, NodeStats

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

    from .api import Node

SortKey = Literal["cpu", "memory", "mailbox", "restarts"]
SORT_KEYS: tuple[SortKey, ...] = ("cpu", "memory", "mailbox", "restarts")


@dataclass(frozen=True, slots=True)
class TopRow:
    """One agent's line in ``beamish top``.

    Attributes:
        name: the agent.
        pid: its process.
        status: its status.
        cpu_percent: its CPU use since the reading before (100: one core); None on a
            first reading or for a new process.
        rss_bytes: its resident memory.
        uss_bytes: its unique memory, None if not measured yet.
        mailbox_depth: messages waiting.
        processed: messages handled, over its life.
        rate: messages handled per second since the reading before, or None.
        mean_ms: its handlers' mean latency in ms since the node started, None before a
            first message.
        restarts: its restarts, over its life.
        dead_letters: the casts it set aside.
    """

    name: str
    pid: int
    status: str
    cpu_percent: float | None
    rss_bytes: int
    uss_bytes: int | None
    mailbox_depth: int
    processed: int
    rate: float | None
    mean_ms: float | None
    restarts: int
    dead_letters: int


def _per_second(before: float, after: float, seconds: float) -> float | None:
    """The rate of a counter between two readings (pure); None when it cannot be told."""
    if seconds <= 0 or after < before:
        return None
    return (after - before) / seconds


def top_rows(before: NodeStats | None, now: NodeStats, sort: SortKey,
             limit: int | None = None) -> tuple[list[TopRow], int]:
    """The rows of ``beamish top`` (pure): each awake agent of ``now``, with its rates
    since ``before`` (None: a first reading), sorted by ``sort`` (largest first, then by
    name), at most ``limit`` of them; and how many were left out."""
    prev: dict[str, AgentStats] = {a.name: a for a in before.agents} if before else {}
    seconds = now.time - before.time if before else 0.0
    rows = []
    for a in now.agents:
        p = prev.get(a.name)
        cpu = None if p is None or p.pid != a.pid \
            else _per_second(p.cpu_seconds, a.cpu_seconds, seconds)
        count = a.latency.count
        rows.append(TopRow(
            a.name, a.pid, a.status, None if cpu is None else cpu * 100, a.rss_bytes,
            a.uss_bytes, a.mailbox_depth, a.processed,
            None if p is None else _per_second(p.processed, a.processed, seconds),
            a.latency.sum_seconds / count * 1000 if count else None, a.restarts,
            a.dead_letters))
    key = {"cpu": lambda r: r.cpu_percent or 0.0, "memory": lambda r: r.rss_bytes,
           "mailbox": lambda r: r.mailbox_depth, "restarts": lambda r: r.restarts}[sort]
    rows.sort(key=lambda r: r.name)
    rows.sort(key=key, reverse=True)  # stable: ties stay in name order
    if limit is None or len(rows) <= limit:
        return rows, 0
    return rows[:limit], len(rows) - limit


def _mib(n: int | None) -> str:
    return "-" if not n else f"{n / 1048576:.1f}M"


def _num(x: float | None, fmt: str) -> str:
    return "-" if x is None else format(x, fmt)


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}" if x < 1 else f"{x:,.1f}"


def summary(s: NodeStats) -> str:
    """The line above the table: the node's own figures and counts (pure)."""
    up = int(s.uptime)
    statuses = ", ".join(f"{n:,} {status}" for status, n in sorted(s.by_status.items()))
    kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(s.restarts_by_kind.items()))
    return (f"node pid {s.pid}, up {up // 3600}h{up // 60 % 60:02d}m{up % 60:02d}s, "
            f"RSS {_mib(s.rss_bytes)}; agents: {s.awake:,} awake"
            + (f" ({statuses})" if statuses else "")
            + f"; restarts since start: {kinds or 'none'}; events {s.events:,}")


HEADER = ("NAME", "PID", "STATUS", "CPU%", "RSS", "USS", "MAILBOX", "HANDLED", "MSG/S",
          "MEAN ms", "RESTARTS", "DEAD")
_SORTED_COLUMN = {"cpu": "CPU%", "memory": "RSS", "mailbox": "MAILBOX", "restarts": "RESTARTS"}


def render(s: NodeStats, rows: list[TopRow], more: int, sort: SortKey) -> RenderableType:
    """The screen: the summary line, then the table (the sorted column marked)."""
    from rich import box
    from rich.console import Group
    from rich.table import Table
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for title in HEADER:
        marked = title == _SORTED_COLUMN[sort]
        table.add_column(title + (" ▼" if marked else ""), no_wrap=True,
                         justify="left" if title in ("NAME", "STATUS") else "right",
                         style="bold" if marked else None)
    for r in rows:
        table.add_row(r.name, str(r.pid), r.status, _num(r.cpu_percent, ".1f"),
                      _mib(r.rss_bytes), _mib(r.uss_bytes), f"{r.mailbox_depth:,}",
                      f"{r.processed:,}", _num(r.rate, ",.1f"), _ms(r.mean_ms),
                      str(r.restarts), str(r.dead_letters))
    parts: list[RenderableType] = [summary(s), table]
    if more:
        parts.append(f"... {more:,} more awake agent{'s' if more != 1 else ''} not shown "
                     "(--limit 0 shows all)")
    if not rows:
        parts.append("no agent is awake")
    return Group(*parts)


def run_top(node: Node, sort: SortKey, interval: float, once: bool, limit: int | None,
            console: Console | None = None) -> int:
    """Show the table, refreshed every ``interval`` seconds until Ctrl-C (or, ``once``,
    print it after two readings ``interval`` apart); return the exit status."""
    from rich.console import Console
    from rich.live import Live
    if console is None:
        console = Console()
        if not console.is_terminal:  # a pipe or file: no 80-column cut
            console = Console(width=max(console.width, 160))
    before = node.stats()
    if once:
        time.sleep(interval)
        now = node.stats()
        console.print(render(now, *top_rows(before, now, sort, limit), sort))
        return 0
    rows, more = top_rows(None, before, sort, limit)
    try:
        with Live(render(before, rows, more, sort), console=console, auto_refresh=False,
                  screen=False) as live:
            while True:
                time.sleep(interval)
                now = node.stats()
                live.update(render(now, *top_rows(before, now, sort, limit), sort),
                            refresh=True)
                before = now
    except KeyboardInterrupt:
        return 0
