"""The checks on what the zygote and agents write to the node (they run user code)."""

from __future__ import annotations

import pytest

from beamish.mailbox import pack
from beamish.runtime.messaging.wire import Report, ReportKind, parse_ready, parse_zygote_frame


def test_a_well_formed_ready_report_is_taken():
    data = pack({"ev": "ready", "pid": 42, "id": 3, "inc": 7, "trap_exits": True})
    assert parse_ready(data) == Report(ReportKind.READY, pid=42, id=3, inc=7, trap_exits=True)
    assert parse_ready(pack({"pid": 42, "id": 3, "inc": 7})) == Report(ReportKind.READY, 3, 7, 42)


@pytest.mark.parametrize("data", [
    b"", b"not msgpack", b"\xc1", pack({"ev": "ready", "pid": 42, "id": 3, "inc": 7})[:-2],
    pack("text"), pack([1, 2]), pack(None), pack({"pid": "42", "id": 3, "inc": 7}),
    pack({"pid": 42.0, "id": 3, "inc": 7}), pack({"pid": True, "id": 3, "inc": 7}),
    pack({"pid": 0, "id": 3, "inc": 7}), pack({"pid": -1, "id": 3, "inc": 7}),
    pack({"pid": 2 ** 40, "id": 3, "inc": 7}), pack({"pid": 42, "id": "3", "inc": 7}),
    pack({"pid": 42, "id": 3}), pack({"pid": 42, "id": 3, "inc": 7, "trap_exits": 1}),
    pack({"ev": "exited", "pid": 42, "id": 3, "inc": 7}), pack({b"pid": 42}),
])
def test_a_ready_datagram_that_does_not_fit_is_refused(data):
    assert parse_ready(data) is None


def test_zygote_frames_are_checked_field_by_field():
    assert parse_zygote_frame({"op": "forked", "req": 1, "pid": 9}) is not None
    assert parse_zygote_frame({"op": "exited", "pid": 9, "code": -9}) is not None
    assert parse_zygote_frame({"op": "refused", "req": 1, "module": "m", "error": "e"})
    for bad in ({"op": "forked", "req": "1", "pid": 9}, {"op": "forked", "req": 1},
                {"op": "exited", "pid": [9], "code": 0}, {"op": "exited", "pid": 9},
                {"op": "refused", "req": 1, "module": 3, "error": "e"}, {"op": "nope"},
                [1, 2], "forked", None):
        assert parse_zygote_frame(bad) is None, bad
