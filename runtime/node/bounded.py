"""`Bounded`: a map that holds at most ``limit`` entries and drops the oldest first.

The node holds what arrives about a process before the process is registered (its exit,
its ready report, the zygote death it died in); what is never claimed (a fork request
that timed out, a report from an agent's own child) must not pile up.
"""

from __future__ import annotations

from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class Bounded(Generic[K, V]):
    """Up to ``limit`` entries, oldest first; putting one more drops the oldest. Not
    thread-safe: its owner locks.

    Args:
        limit: how many entries it holds at most (>= 1).
    """

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"limit={limit!r}: expected at least 1")
        self.limit = limit
        self._items: dict[K, V] = {}

    def put(self, key: K, value: V) -> int:
        """Hold ``value`` under ``key`` as the newest entry (replacing what ``key`` held);
        return how many of the oldest entries were dropped to make room."""
        self._items.pop(key, None)
        dropped = 0
        while len(self._items) >= self.limit:
            del self._items[next(iter(self._items))]
            dropped += 1
        self._items[key] = value
        return dropped

    def get(self, key: K) -> V | None:
        """The entry under ``key`` (left where it is), or None."""
        return self._items.get(key)

    def pop(self, key: K) -> V | None:
        """Take the entry under ``key``, or None."""
        return self._items.pop(key, None)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items
