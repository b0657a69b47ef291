"""`parse_report`: only well-typed reports from agents get through."""

from __future__ import annotations

import pytest

from beamish.runtime.messaging.wire import MAX_PID, Rejected, Report, parse_report

GOOD = {"ev": "ready", "id": 3, "inc": 2, "pid": 4242, "trap_exits": True}


def test_a_valid_ready_report_parses():
    assert parse_report(GOOD) == Report("ready", 3, 2, 4242, True)


def test_a_dead_letter_report_keeps_its_seq_and_reason():
    got = parse_report({"ev": "dead_lettered", "id": 1, "inc": 1, "pid": 9, "seq": 5,
                        "reason": "x" * 10_000})
    assert isinstance(got, Report) and got.seq == 5 and len(got.reason) == 4096


@pytest.mark.parametrize("change", [
    {"pid": "12"}, {"pid": 1.0}, {"pid": True}, {"pid": 0}, {"pid": MAX_PID + 1},
    {"pid": None}, {"id": [1]}, {"inc": -1}, {"id": 2 ** 64 - 1}, {"trap_exits": 1},
    {"ev": "nosuch"}, {"ev": None}, {"reason": b"bytes"}, {"seq": "1"}, {"extra": 1},
    {1: 2},
])
def test_a_field_that_does_not_fit_is_rejected(change):
    assert isinstance(parse_report({**GOOD, **change}), Rejected)


@pytest.mark.parametrize("payload", [None, [], "ready", 7, b"", {}])
def test_a_payload_that_is_not_a_map_of_fields_is_rejected(payload):
    assert isinstance(parse_report(payload), Rejected)
