"""The membership after a restart of the database, on a real PostgreSQL, rounds driven by
hand (``step``): every node fenced itself and joins again at about the same time.

* A node claims nothing in the round it joins: the next round sees the others that joined
  meanwhile, and each node claims only its own shards. Before, the first one back
  claimed every shard (the others' leases had run out), started all their agents, and
  handed two thirds off in the next rounds: a second cold start of each agent.
* A round renews between its claims once a renewal is due: claims taken one by one
  from a slow database (here each takes 0.3 s on the node's clock) must not hold the
  renewal back until the node fences itself. Before, the node fenced itself after its first round of
  claims, and every agent it had started was killed.
"""

from __future__ import annotations

from beamish.runtime.cluster.placement import owner_for
from beamish.supervisor.testing import FakeClock
from tests.cluster.test_membership import (  # noqa: F401 - fixtures
    SHARDS,
    TIMING,
    admin,
    cluster,
    rows,
    settled,
)


def test_nodes_that_join_together_each_claim_only_their_own_shards(cluster, admin):  # noqa: F811
    nodes = {n: cluster(n, start=False) for n in ("n1", "n2", "n3")}
    for m, _, _ in nodes.values():  # all join (as after the database came back)
        m.step()
    assert all(rec.owned == {} for _, rec, _ in nodes.values())
    for m, _, _ in nodes.values():
        m.step()
    assert settled(admin, nodes)
    for name, (_, rec, _) in nodes.items():
        assert rec.times("lost") == [], f"{name} claimed shards it then handed off"
        assert set(rec.owned) == {s for s in range(SHARDS)
                                  if owner_for(s, sorted(nodes)) == name}
    assert all(epoch == 1 for _, epoch in rows(admin).values())  # each claimed once


def test_a_round_of_slow_claims_renews_before_the_fence_is_due(cluster, admin):  # noqa: F811
    clock = FakeClock(0.0)
    m, rec, _ = cluster("n1", start=False, clock=clock)
    gained = rec.on_gained

    def slow_claim(shard: int, epoch: int) -> None:
        gained(shard, epoch)
        clock.advance(0.3)  # each claim takes 0.3 s; a fence is due 1.8 s after a renewal
    rec.on_gained = slow_claim  # type: ignore[method-assign]
    m.step()  # joins
    clock.advance(TIMING.renew_period)
    m.step()  # claims every shard: 7.2 s on the node's clock
    clock.advance(0.1)
    m.step()
    assert m.watch.fences == 0 and rec.times("fenced") == []
    assert len(rec.owned) == SHARDS and settled(admin, {"n1": (m, rec, None)})
