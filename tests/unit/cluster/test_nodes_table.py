"""``beamish nodes``'s table, pure."""

from __future__ import annotations

import datetime as dt

import pytest

from beamish.runtime.client.nodes import as_json, lease_text, rows
from beamish.runtime.store.postgres.cluster import Member

T = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


@pytest.mark.parametrize("left,text", [(4.24, "4.2s left"), (0.0, "expired 0.0s ago"),
                                       (-3.06, "expired 3.1s ago")])
def test_lease_text(left, text):
    assert lease_text(left) == text


def test_rows_and_json():
    m = Member("n1", "tcp://a:1", 3, T, 2.5, T, True, 7, 4)
    assert rows([m]) == [("n1", "tcp://a:1", "2.5s left", "yes", "7", "4", "3")]
    assert as_json(m)["alive"] is True and as_json(m)["lease_expires"] == T.isoformat()
