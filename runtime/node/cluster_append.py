"""The cluster node's messenger for replicated agents (`ReplicatedMessenger`): the calls
and casts its clients send (through its front door or its control socket) are appended in
PostgreSQL in one statement per group (``store/postgres/append.py``), which also notifies
the owners of the agents whose shard another node owns, at the commit.

    sender threads ─▶ group appender ─▶ one statement: append + NOTIFY (the ack) ─▶
        ring the agent's inbox if it runs here (the message inline), else its owner hears
        the notification (``store/postgres/ring.py``)

Before, a group cost a transaction of ``3 + 2 * agents`` round trips, and each ring to
another node one more, sent after the acknowledgement by a thread of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from .._paths import NodePaths
from .._types import ACCEPTS_MESSAGES, AgentStatus
from ..errors import AgentNotFound
from ..messaging.messenger import Messenger, encode_batch, hint_node
from ..messaging.wire import ring_frame
from ..store.postgres.append import Appended, PgAppender, item_outcomes
from ..store.protocol import Store

ACCEPTING = frozenset(str(s) for s in ACCEPTS_MESSAGES)
SLEEPING = str(AgentStatus.SLEEPING)


class NotReplicated(AgentNotFound):
    """No replicated agent has the name (the node then looks for a node-pinned agent of
    another node by that name: `cluster_node.ClusterMessenger`). Nothing was sent."""


def outcomes(items: list[tuple[str, bytes]], appended: list[Appended]
             ) -> list[tuple[int, int, bool] | AgentNotFound]:
    """`item_outcomes`, with `NotReplicated` for the names no replicated agent has."""
    missing = {a.name for a in appended if a.agent_id is None}
    return [NotReplicated(name) if name in missing else outcome for (name, _), outcome
            in zip(items, item_outcomes(items, appended, ACCEPTING, SLEEPING), strict=True)]


class ReplicatedMessenger(Messenger):
    """`Messenger` whose appends go through ``appender`` (one statement per group).

    Args:
        paths: the node's files.
        store: the cluster's store (replies read back when a ring was lost).
        max_message_bytes: the node's message size limit.
        appender: the node's `PgAppender`.
        elsewhere: whether an agent's shard is owned by another node (it is notified).
        on_append: called with an agent's name after each append to it committed.
    """

    def __init__(self, paths: NodePaths, store: Store, max_message_bytes: int,
                 appender: PgAppender, elsewhere: Callable[[str], bool],
                 on_append: Callable[[str], None]) -> None:
        super().__init__(paths, store, max_message_bytes, on_append=on_append,
                         append_batch=self._batch)
        self.appender = appender
        self.elsewhere = elsewhere

    def _batch(self, items: list[tuple[str, bytes]], taken: list[bytes]
               ) -> list[tuple[int, int, bool] | AgentNotFound]:
        ring = {name for name, _ in items if self.elsewhere(name)}
        return outcomes(items, self.appender.append(items, taken, ring))

    def cast_many(self, items: Iterable[tuple[str, Any]]) -> None:
        """`Messenger.cast_many` in one statement: all appended, or none.

        Raises:
            AgentNotFound: a name that is not a live replicated agent (none is sent).
            MessageTooLarge, BadMessage, ConfigError: as `Messenger.cast_many`.
        """
        by_name = encode_batch(items, self.limit)
        if not by_name:
            return
        port = self._port()
        taken = list(port.taken)
        flat = [(name, packed) for name, group in by_name.items() for packed in group]
        rows = self.appender.append(flat, taken, {n for n in by_name if self.elsewhere(n)},
                                    whole=True)
        del port.taken[:len(taken)]
        for row in rows:
            if row.status is None:
                raise AgentNotFound(row.name, "so none of this cast_many was sent")
            if row.status not in ACCEPTING:
                raise AgentNotFound(row.name, f"it is {row.status}, so none of this "
                                              "cast_many was sent")
        woke = False
        for row in rows:
            assert self.on_append is not None and row.agent_id is not None \
                and row.first is not None
            self.on_append(row.name)
            if row.status == SLEEPING:
                woke = True
            else:
                self.doorbells.ring(self._inbox(row.agent_id), ring_frame(row.first))
        if woke:
            hint_node(self.paths)
