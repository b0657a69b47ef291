"""Names are cluster-wide across both kinds of agent: a node-pinned spawn on one node
and a replicated spawn of the same name on another, at the same moment, never both
succeed (both claims take the name's lock in PostgreSQL, in the transaction that
writes the name: ``store/postgres/names.py``). A forwarded info names the agent's
node."""

from __future__ import annotations

import threading

import pytest

from beamish.runtime import SpawnError
from tests.cluster import test_pinned
from tests.cluster.test_pinned import LEDGER, Pair

pair = test_pinned.pair  # the fixture: two nodes n1, n2
pytestmark = [pytest.mark.slow, pytest.mark.cluster_long]


def test_a_pinned_and_a_replicated_spawn_of_one_name_race_and_one_wins(pair: Pair) -> None:
    n1, n2 = pair.locals["n1"], pair.locals["n2"]
    names = [f"race{i}" for i in range(60)]
    won: dict[str, list[str]] = {name: [] for name in names}
    errors: list[BaseException] = []

    def spawn(kind: str, name: str, barrier: threading.Barrier) -> None:
        barrier.wait(timeout=30)
        try:
            if kind == "pinned":
                n1.spawn(LEDGER, name=name, lazy=True)
            else:
                n2.spawn(LEDGER, name=name, durability="replicated", lazy=True)
            won[name].append(kind)
        except SpawnError:
            pass
        except BaseException as exc:  # anything else fails the test
            errors.append(exc)

    for name in names:
        barrier = threading.Barrier(2)
        threads = [threading.Thread(target=spawn, args=(k, name, barrier))
                   for k in ("pinned", "replicated")]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    assert not errors, errors[:3]
    both = [n for n, kinds in won.items() if len(kinds) == 2]
    assert not both, f"names held by a pinned and a replicated agent at once: {both}"
    assert all(len(kinds) == 1 for kinds in won.values()), won
    # info through the other node names the pinned agent's node (a forwarded info);
    # on its own node it is one of the node's own agents (no node)
    for name in [n for n, ks in won.items() if ks == ["pinned"]][:5]:
        assert n2.info(name).node == "n1"
        assert n1.info(name).node is None
    kinds = [k for ks in won.values() for k in ks]
    print(f"\n{kinds.count('pinned')} pinned and {kinds.count('replicated')} replicated "
          "spawns won their race")
