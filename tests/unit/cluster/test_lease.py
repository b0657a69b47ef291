"""lease_action(): a table, one row per rule; LeaseTiming's validation."""

from __future__ import annotations

import pytest

from beamish.runtime.cluster.lease import LeaseAction, LeaseDecision, LeaseTiming, lease_action
from beamish.runtime.errors import ConfigError

T = LeaseTiming(ttl=4.0, margin=1.0)  # renew every 1.0 s, fence 3.0 s after a good send
W, R, F = LeaseAction.WAIT, LeaseAction.RENEW, LeaseAction.FENCE


@pytest.mark.parametrize("now,last_ok,last_attempt,expected", [
    # never renewed (joining, or fenced): renew at once, then at the pace
    (10.0, None, None, LeaseDecision(R, 11.0)),
    (10.5, None, 10.0, LeaseDecision(W, 11.0)),
    (11.0, None, 10.0, LeaseDecision(R, 12.0)),
    # alive: wait until renew_every after the last attempt
    (10.2, 10.0, 10.0, LeaseDecision(W, 11.0)),
    (11.0, 10.0, 10.0, LeaseDecision(R, 12.0)),
    # renewals failing: keep the pace, but look again no later than the fence deadline
    (12.0, 10.0, 11.5, LeaseDecision(W, 12.5)),
    (12.6, 10.0, 11.5, LeaseDecision(R, 13.0)),
    # the fence deadline is last good *send* + ttl - margin, whatever the attempts
    (13.0, 10.0, 12.9, LeaseDecision(F, 13.0)),
    (20.0, 10.0, None, LeaseDecision(F, 20.0)),
    # a good renewal moves the deadline
    (13.0, 12.5, 12.5, LeaseDecision(W, 13.5)),
])
def test_lease_action_table(now, last_ok, last_attempt, expected):
    assert lease_action(now, last_ok, last_attempt, T) == expected


def test_the_fence_comes_before_the_earliest_expiry_the_database_can_compute():
    # The database's expiry is (commit time) + ttl >= (send time) + ttl.
    for sent in (0.0, 3.3, 100.0):
        deadline = sent + T.fence_after
        assert lease_action(deadline, sent, sent, T).action is F
        assert lease_action(deadline - 1e-6, sent, sent, T).action is not F
        assert deadline + T.margin == sent + T.ttl


def test_renew_every_defaults_to_a_quarter_of_the_ttl():
    assert LeaseTiming(ttl=8.0, margin=2.0).renew_period == 2.0
    assert LeaseTiming(ttl=8.0, margin=2.0, renew_every=0.5).renew_period == 0.5


@pytest.mark.parametrize("kwargs,match", [
    ({"ttl": 0}, "ttl must be positive"),
    ({"ttl": 4.0, "margin": 4.0}, "margin"),
    ({"ttl": 4.0, "margin": 0}, "margin"),
    ({"ttl": 4.0, "margin": 1.0, "renew_every": 3.0}, "renew_every"),
    ({"ttl": 4.0, "margin": 1.0, "renew_every": 0}, "renew_every"),
])
def test_lease_timing_refuses_a_node_that_would_fence_between_renewals(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        LeaseTiming(**kwargs)
