"""link_verdict(): a forward's link judged from its monitor's state, one row per rule.
Pure: times are passed in."""

from __future__ import annotations

import pytest

from beamish.runtime.cluster.reach import (
    CONNECT_WAIT_S,
    DOWN_GRACE_S,
    LinkState,
    Verdict,
    link_verdict,
)

OPENED = 100.0


@pytest.mark.parametrize(("state", "now", "expected"), [
    # up: wait, however long it has been
    (LinkState(True, True, OPENED, OPENED + 1, True), OPENED + 60, Verdict.WAIT),
    # never connected: waits CONNECT_WAIT_S, then cut; nothing left this node
    (LinkState(False, False, OPENED, OPENED, False), OPENED + CONNECT_WAIT_S - 0.1,
     Verdict.WAIT),
    (LinkState(False, False, OPENED, OPENED, False), OPENED + CONNECT_WAIT_S,
     Verdict.CUT_UNSENT),
    # lost after the request was queued on a link that was up: may have been sent
    (LinkState(False, True, OPENED, OPENED + 5, True), OPENED + 5 + DOWN_GRACE_S - 0.1,
     Verdict.WAIT),
    (LinkState(False, True, OPENED, OPENED + 5, True), OPENED + 5 + DOWN_GRACE_S,
     Verdict.CUT_SENT),
    # lost before the request was queued, never up since: it never left
    (LinkState(False, True, OPENED, OPENED + 5, False), OPENED + 5 + DOWN_GRACE_S,
     Verdict.CUT_UNSENT),
    # lost long ago: judged at once (the next request on that socket)
    (LinkState(False, True, OPENED, OPENED + 5, False), OPENED + 500, Verdict.CUT_UNSENT),
])
def test_link_verdict(state: LinkState, now: float, expected: Verdict) -> None:
    assert link_verdict(state, now) is expected
