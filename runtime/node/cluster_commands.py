"""The node's commands about replicated agents (``durability="replicated"``), on a node in
a cluster: what ``commands.py`` hands over when a name is none of the node's own agents.

* ``stop``, ``sleep``, ``delete``, ``restart``: `ClusterNode.request` has the owner of the
  agent's shard do it (from any node), and waits for its answer.
* ``dead_letters``, ``state``, ``resend_dead_letter``: the same commands, run on a view of
  the node whose store is the cluster's PostgreSQL (``commands._replicated_view``).
* ``ps``: the node's own page and the replicated agents' page (both in name order, each
  read with the page's ``limit``) merged by `merge_pages`: a 100,000-agent cluster is
  listed a page at a time without reading every record (``--after`` pages on).
* ``tree``: the replicated agents are children of the root (their ``supervisor``), read a
  page at a time the same way, the others counted by status.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, TypeVar

from ..store.protocol import Store


class Named(Protocol):
    """A row with a name (an `AgentInfo`, an `AgentNode`)."""

    @property
    def name(self) -> str:
        """Its name."""


R = TypeVar("R", bound=Named)


def is_replicated(store: Store, name: str) -> bool:
    """Whether ``name`` is a replicated agent's for a node in a cluster whose own store is
    ``store``: the node has no agent of its own by that name."""
    return store.read(lambda t: t.get_agent(name)) is None


def merge_pages(own: Sequence[R], own_more: int, others: Sequence[R], others_more: int,
                limit: int | None) -> tuple[list[R], int]:
    """Merge two pages of rows in name order (each the first ``limit`` rows of its source
    after the same cursor, and how many more match there) into one page of at most
    ``limit`` rows and how many more match in both (pure)."""
    rows = sorted([*own, *others], key=lambda r: r.name)
    kept = rows if limit is None else rows[:limit]
    return kept, own_more + others_more + len(rows) - len(kept)


def hidden_counts(counts: dict[str, int], shown: Sequence[str]) -> dict[str, int]:
    """How many agents of each status a page left out: ``counts`` (all, by status) less
    the statuses of those ``shown`` (pure; statuses left with none are dropped)."""
    left = dict(counts)
    for status in shown:
        left[status] = left.get(status, 0) - 1
    return {s: n for s, n in left.items() if n > 0}
