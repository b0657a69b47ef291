"""The front door's counters (`FrontDoorCounts`, pure): a refusal counts once in
``refused`` and once in its own kind's counter, if it has one; one row per kind."""

from __future__ import annotations

import dataclasses

import pytest

from beamish.runtime.cluster.frontdoor import FrontDoorCounts, Refusal


@pytest.mark.parametrize("why, refused_auth, refused_protocol", [
    (Refusal.AUTH, 1, 0),
    (Refusal.PROTOCOL, 0, 1),
    (Refusal.OTHER, 0, 0),
    (Refusal.CLOSED, 0, 0),
])
def test_a_refusal_is_counted_by_its_kind(why, refused_auth, refused_protocol):
    before = FrontDoorCounts(connections=3, requests=7)
    after = before.refusal(why)
    assert after == FrontDoorCounts(connections=3, requests=7, refused=1,
                                    refused_auth=refused_auth,
                                    refused_protocol=refused_protocol)
    assert before == FrontDoorCounts(connections=3, requests=7)  # a new record


def test_the_counts_are_a_frozen_record():
    counts = FrontDoorCounts()
    with pytest.raises(dataclasses.FrozenInstanceError):
        counts.requests = 1  # type: ignore[misc]
    with pytest.raises((AttributeError, TypeError)):
        counts.refused_other = 1  # type: ignore[attr-defined]
