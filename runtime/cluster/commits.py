"""The node committer's rules for replicated agents' write sets (pure; the shell is
``node/cluster_commits.py``).

`decide` says what becomes of one set taken from the queue before the group's
transaction: committed with the group, refused as stale without a transaction, or
dropped unanswered (the node fenced itself: its agents are being killed, and no set
may be acknowledged). `after_unknown` says what each set of a group whose commit was cut
off in flight is answered once the node asked the writer row.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Decision(enum.Enum):
    """What the committer does with one queued set."""

    COMMIT = "commit"  # in the group's transaction, fenced there by the shard's row
    STALE = "stale"  # answered StaleEpoch at once: this node does not hold that grant
    DROP = "drop"  # not answered: the node is fenced, its agents die unacknowledged


@dataclass(frozen=True, slots=True)
class SetFence:
    """The grant a write set was made under.

    Attributes:
        shard: its shard.
        node: the node that granted it.
        epoch: the epoch of the grant.
    """

    shard: int
    node: str
    epoch: int


def decide(fence: SetFence, node: str, granted: int | None, fenced: bool) -> Decision:
    """What becomes of a set made under ``fence`` on node ``node``, which holds
    ``fence.shard`` at epoch ``granted`` now (None: not held) and is ``fenced`` or not.

    A fenced node answers nothing (its agents are killed; an answer could acknowledge
    what its successor will redo); a grant this node no longer holds, or one of another
    node or epoch, is stale (the agent stops); the rest is committed, the shard's row
    checked again in the transaction.
    """
    if fenced:
        return Decision.DROP
    if fence.node != node or granted is None or granted != fence.epoch:
        return Decision.STALE
    return Decision.COMMIT


class Unknown(enum.Enum):
    """How a set of a group cut off in flight is answered."""

    COMMITTED = "committed"  # its values: the writer row holds the commit's number
    NOT_COMMITTED = "not-committed"  # StoreUnavailable: nothing of it was stored
    IN_DOUBT = "in-doubt"  # CommitOutcomeUnknown: the agent ends, acknowledging nothing


def after_unknown(outcome: bool | None, item_failed: bool) -> Unknown:
    """The answer to a set of a cut-off group whose writer row said ``outcome`` (True:
    durable, False: not, None: not known yet); ``item_failed``: the set's own item was
    rolled back within the group (it committed nothing either way)."""
    if item_failed or outcome is False:
        return Unknown.NOT_COMMITTED
    if outcome is None:
        return Unknown.IN_DOUBT
    return Unknown.COMMITTED
