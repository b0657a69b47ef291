"""``python -m benchmarks.uss_account [N]``: where an idle agent's private memory is.

Spawns N ``Counter`` agents (default 20; one call each), then classifies every page each
one holds alone, per mapping: a **copy** of a page the zygote has at the same address, or
**fresh** (the zygote has none there). Prints the mean KiB per agent of each (mapping,
kind), largest first, and the median USS. docs/memory.md explains the figures. Linux only;
reading another process's pagemap needs the same user (frames need CAP_SYS_ADMIN: without
it every exclusive page counts as fresh).
"""

from __future__ import annotations

import struct
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from statistics import median

import psutil

from beamish.runtime import start_node

from .agents import COUNTER

PAGE = 4096
_ENTRY = struct.Struct("<Q")


def _mappings(pid: int) -> list[tuple[int, int, str, str]]:
    """(start, end, permissions, name) of each mapping of ``pid``."""
    out = []
    with open(f"/proc/{pid}/maps") as fh:
        for line in fh:
            parts = line.split()
            start, end = (int(x, 16) for x in parts[0].split("-"))
            out.append((start, end, parts[1], parts[5] if len(parts) > 5 else "[anon]"))
    return out


def _pages(pid: int, start: int, end: int) -> dict[int, tuple[bool, int]]:
    """Each present page of ``pid`` in [start, end): address -> (mapped by this process
    only, its frame)."""
    try:
        with open(f"/proc/{pid}/pagemap", "rb") as fh:
            fh.seek(start // PAGE * _ENTRY.size)
            data = fh.read((end - start) // PAGE * _ENTRY.size)
    except OSError:
        return {}
    pages = {}
    for i in range(len(data) // _ENTRY.size):
        (entry,) = _ENTRY.unpack_from(data, i * _ENTRY.size)
        if entry >> 63:
            pages[start + i * PAGE] = (bool(entry >> 56 & 1), entry & ((1 << 55) - 1))
    return pages


def _label(name: str, size_kib: int) -> str:
    if name != "[anon]":
        return name.rsplit("/", 1)[-1]
    if size_kib >= 8192:
        return "[anon: thread stacks]"
    if size_kib >= 1024:
        return "[anon: obmalloc arenas]"
    return f"[anon {size_kib} KiB]"


def account(agent: int, zygote: int) -> Counter[tuple[str, str]]:
    """KiB that ``agent`` holds alone, by (mapping, "copy" or "fresh")."""
    kib: Counter[tuple[str, str]] = Counter()
    for start, end, perm, name in _mappings(agent):
        if "w" not in perm:
            continue
        mine, theirs = _pages(agent, start, end), _pages(zygote, start, end)
        label = _label(name, (end - start) // 1024)
        for addr, (alone, frame) in mine.items():
            if not alone:
                continue
            other = theirs.get(addr)
            kind = "copy" if other is not None and other[1] != frame else "fresh"
            kib[(label, kind)] += PAGE // 1024
    return kib


def main(argv: list[str]) -> int:
    """Run the accounting; print the table."""
    n = int(argv[0]) if argv else 20
    node = start_node(tempfile.mkdtemp(prefix="uss-"))
    try:
        with ThreadPoolExecutor(4) as pool:
            refs = list(pool.map(lambda i: node.spawn(COUNTER, name=f"u{i}"), range(n)))
            pids = list(pool.map(lambda ref: ref.call("pid", 30), refs))
        time.sleep(0.5)  # idle: their start's last writes are done
        zygote = psutil.Process(pids[0]).ppid()
        total: Counter[tuple[str, str]] = Counter()
        for pid in pids:
            total.update(account(pid, zygote))
        print(f"{n} idle agents: {sum(total.values()) / n:,.0f} KiB each held alone; "
              f"USS median {median(psutil.Process(p).memory_full_info().uss for p in pids) / 1024:,.0f} KiB")
        for (label, kind), kib in total.most_common():
            if kib / n >= 4:
                print(f"  {label:48} {kind:5} {kib / n:8,.0f} KiB")
    finally:
        node.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
