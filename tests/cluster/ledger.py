"""The ledger check of the cluster fault tests, in one place: an agent's applied messages
against its senders' ledgers, exactly.

Each sender numbers its messages (``seq``, rising) and keeps, per agent, the ones that
were acknowledged (``acked``, in sending order) and the ones in doubt (``doubt``: the send
raised, so the message may or may not have been stored). An agent applies each message
as a list whose last two items are ``[sender index, seq]`` (``[who, seq]`` or
``[kind, who, seq]``). `check_agent` asserts, for one agent:

* nothing applied twice;
* each sender's messages applied in its order;
* every acknowledged message applied (nothing lost);
* nothing applied beyond the acknowledged and the in-doubt ones (nothing invented).

A sender with nothing in doubt (an empty ``doubt``) is thereby checked for exactly its
acknowledged messages, in order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol


class Ledgered(Protocol):
    """A sender's ledger, as the tests' senders keep it."""

    index: int
    acked: dict[str, list[int]]
    doubt: dict[str, set[int]]


def check_agent(agent: str, applied: Sequence[Sequence[Any]],
                senders: Sequence[Ledgered]) -> int:
    """Check agent ``agent``'s ``applied`` messages (in the order it applied them) against
    ``senders``' ledgers (the rules are in the module doc); return how many acknowledged
    messages were found applied."""
    entries = [tuple(x) for x in applied]
    assert len(entries) == len(set(entries)), f"{agent}: applied twice: " \
        f"{sorted({e for e in entries if entries.count(e) > 1})[:10]}"
    found = 0
    for s in senders:
        mine = [int(x[-1]) for x in entries if x[-2] == s.index]
        assert mine == sorted(mine), f"{agent}: sender {s.index}'s order"
        acked = s.acked.get(agent, [])
        missing = set(acked) - set(mine)
        assert not missing, f"{agent}: sender {s.index}: acknowledged casts lost: " \
            f"{sorted(missing)[:10]}"
        extra = set(mine) - set(acked) - s.doubt.get(agent, set())
        assert not extra, f"{agent}: sender {s.index}: applied but never acknowledged nor " \
            f"in doubt: {sorted(extra)[:10]}"
        found += len(acked)
    return found


def check_ledgers(client: Any, agents: Sequence[str], senders: Sequence[Ledgered]
                  ) -> tuple[int, int]:
    """Every one of ``agents``' applied messages (its ``"get"`` call's answer, through
    ``client``) against ``senders``' ledgers (`check_agent`); return the counts of
    acknowledged and in-doubt messages."""
    acked = 0
    for a in agents:
        acked += check_agent(a, client.call(a, "get", timeout=30), senders)
    doubt = sum(len(v) for s in senders for v in s.doubt.values())
    return acked, doubt
