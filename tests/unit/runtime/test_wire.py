"""wire: every runtime frame round-trips, and every kind of invalid input is refused.

Pure: frames are built and decoded in memory (``beamish.mailbox.decode`` stands in for the
socket that would carry them).
"""

from __future__ import annotations

from typing import Any

import pytest

from beamish.mailbox import Envelope, Kind, ProtocolError, decode, encode_ring, pack
from beamish.runtime.messaging.wire import (
    MAX_PID,
    MAX_REASON_CHARS,
    MAX_U63,
    Exited,
    ExitRequest,
    Forked,
    ForkRequest,
    FrameDecoder,
    Refused,
    Rejected,
    ReplyRing,
    Report,
    ReportKind,
    Ring,
    StopRequest,
    encode_frame,
    encode_zygote_frame,
    encode_zygote_request,
    parse_agent_inbox,
    parse_ready,
    parse_reply_ring,
    parse_report,
    parse_zygote_frame,
    parse_zygote_request,
    ready_datagram,
    reply_frame,
    report_frames,
    report_payload,
    ring_frame,
    stop_frame,
    worth_logging,
)
from beamish.runtime.store.records import NodeFields

MSG_ID = b"m" * 16


def _env(frame: bytes) -> Envelope:
    return decode([frame])


# -- rings and stop requests ------------------------------------------------------------------
def test_a_ring_carries_its_seq_in_eight_big_endian_bytes() -> None:
    assert ring_frame(5, b"x") == encode_ring(Kind.RING, (5).to_bytes(8, "big"), b"x")


@pytest.mark.parametrize(("frame", "expected"), [
    (ring_frame(1), Ring(1, b"")),
    (ring_frame(MAX_U63, pack({"k": "cast"})), Ring(MAX_U63, pack({"k": "cast"}))),
    (stop_frame("shutdown"), StopRequest("shutdown")),
    (encode_ring(Kind.SYSTEM, b"", pack({"op": "stop"})), StopRequest("normal")),
    (encode_ring(Kind.SYSTEM, b"", pack({"op": "stop", "reason": 7})), StopRequest("7")),
])
def test_an_agent_inbox_frame_parses(frame: bytes, expected: object) -> None:
    assert parse_agent_inbox([frame]) == expected


@pytest.mark.parametrize("frame", [
    encode_ring(Kind.RING, b"\x00" * 7),  # a seq is eight bytes
    encode_ring(Kind.RING, b"\x00" * 9),
    encode_ring(Kind.RING),
    encode_ring(Kind.SYSTEM, b"", pack(["stop"])),
    encode_ring(Kind.SYSTEM, b"", pack({"op": "ping"})),
    encode_ring(Kind.SYSTEM),
    encode_ring(Kind.CAST, (1).to_bytes(8, "big")),
    encode_ring(Kind.REPLY, MSG_ID, pack({"ok": True})),
    encode_ring(Kind.INFO, b"", pack({"op": "stop"})),
    encode_ring(Kind.SYSTEM, b"", b"\xc1"),  # not msgpack
    b"\x02" + ring_frame(1)[1:],  # another protocol version
    b"", b"\x01",
])
def test_an_agent_inbox_frame_that_is_no_ring_or_stop_is_ignored(frame: bytes) -> None:
    assert parse_agent_inbox([frame]) is None


def test_an_agent_inbox_message_of_several_frames_is_ignored() -> None:
    assert parse_agent_inbox([ring_frame(1), ring_frame(2)]) is None
    assert parse_agent_inbox([]) is None


def test_a_ring_unpacks_as_seq_and_message() -> None:
    seq, packed = Ring(3, b"\x81")
    assert (seq, packed) == (3, b"\x81")


# -- reply rings --------------------------------------------------------------------------------
def test_a_reply_ring_carries_the_reply_record() -> None:
    reply = {"ok": True, "v": b"\x01", "expires": 1.5}
    assert reply_frame(MSG_ID, pack(reply)) == encode_ring(Kind.REPLY, MSG_ID, pack(reply))
    assert parse_reply_ring(_env(reply_frame(MSG_ID, pack(reply)))) == ReplyRing(MSG_ID, reply)


@pytest.mark.parametrize("frame", [
    encode_ring(Kind.REPLY, MSG_ID),  # no reply carried
    encode_ring(Kind.REPLY, MSG_ID, pack([1])),
    encode_ring(Kind.RING, MSG_ID, pack({"ok": True})),
    encode_ring(Kind.CAST, MSG_ID, pack({"ok": True})),
])
def test_a_frame_that_is_no_reply_ring_is_refused(frame: bytes) -> None:
    assert parse_reply_ring(_env(frame)) is None


# -- reports ------------------------------------------------------------------------------------
REPORTS = [
    Report(ReportKind.READY, 3, 2, 4242, trap_exits=True),
    Report(ReportKind.READY, 3, 2, 4242),
    Report(ReportKind.DEAD_LETTERED, 1, 1, 9, reason="exception: ValueError", seq=5),
    Report(ReportKind.RECOVER_FAILED, MAX_U63, MAX_U63, MAX_PID, reason="boom"),
    Report(ReportKind.TERMINATE_FAILED, 1, 1, 1, reason=""),
]


@pytest.mark.parametrize("report", REPORTS)
def test_a_report_round_trips_through_the_report_socket(report: Report) -> None:
    env = decode(report_frames(report))
    assert env.kind is Kind.INFO and parse_report(env.payload) == report


def test_report_frames_are_the_envelope_agents_always_sent() -> None:
    report = REPORTS[2]
    assert report_frames(report) == [b"\x01", bytes([Kind.INFO]), b"", b"",
                                     pack(report_payload(report))]
    assert report_payload(report) == {"ev": "dead_lettered", "id": 1, "inc": 1, "pid": 9,
                                      "reason": "exception: ValueError", "seq": 5}
    assert report_payload(REPORTS[0]) == {"ev": "ready", "id": 3, "inc": 2, "pid": 4242,
                                          "trap_exits": True}


@pytest.mark.parametrize("report", REPORTS[:2])
def test_a_ready_report_round_trips_through_the_ready_datagram(report: Report) -> None:
    assert parse_ready(ready_datagram(report)) == report


def test_a_long_reason_is_cut() -> None:
    got = parse_report({"ev": "recover_failed", "id": 1, "inc": 1, "pid": 1,
                        "reason": "x" * (MAX_REASON_CHARS + 1)})
    assert isinstance(got, Report) and len(got.reason) == MAX_REASON_CHARS


GOOD: dict[Any, Any] = {"ev": "ready", "id": 3, "inc": 2, "pid": 4242, "trap_exits": True}


@pytest.mark.parametrize(("change", "why"), [
    ({"ev": "nosuch"}, "unknown report kind"),
    ({"ev": None}, "unknown report kind"),
    ({"ev": 1}, "unknown report kind"),
    ({"extra": 1}, "unknown fields"),
    ({1: 2}, "unknown fields"),
    ({"id": 0}, "'id'"),
    ({"id": MAX_U63 + 1}, "'id'"),
    ({"id": "3"}, "'id'"),
    ({"inc": -1}, "'inc'"),
    ({"inc": 2.0}, "'inc'"),
    ({"pid": True}, "'pid'"),
    ({"pid": MAX_PID + 1}, "'pid'"),
    ({"pid": None}, "'pid'"),
    ({"trap_exits": 1}, "'trap_exits'"),
    ({"trap_exits": None}, "'trap_exits'"),
    ({"reason": b"bytes"}, "'reason'"),
    ({"seq": 0}, "'seq'"),
    ({"seq": "1"}, "'seq'"),
    ({"seq": None}, "'seq'"),
])
def test_a_report_field_that_does_not_fit_is_rejected_with_its_name(
        change: dict[Any, Any], why: str) -> None:
    got = parse_report({**GOOD, **change})
    assert isinstance(got, Rejected) and why in got.why, got


@pytest.mark.parametrize("payload", [None, [], "ready", 7, b"", {}, {"ev": "ready"}])
def test_a_report_that_is_not_a_map_of_fields_is_rejected(payload: Any) -> None:
    assert isinstance(parse_report(payload), Rejected)


def test_a_missing_field_is_rejected() -> None:
    for key in ("ev", "id", "inc", "pid"):
        payload = {k: v for k, v in GOOD.items() if k != key}
        assert isinstance(parse_report(payload), Rejected), key


def test_a_ready_datagram_may_leave_out_ev_and_carry_other_fields() -> None:
    datagram = pack({"pid": 42, "id": 3, "inc": 7, "note": "ignored"})
    assert parse_ready(datagram) == Report(ReportKind.READY, 3, 7, 42)


@pytest.mark.parametrize("payload", [
    {"pid": 42, "id": 0, "inc": 7},  # ids and incarnations start at 1
    {"pid": 42, "id": 3, "inc": 0},
    {"pid": 42, "id": 1 << 63, "inc": 7},
    {"pid": 42, "id": 3, "inc": 7, "ev": "dead_lettered"},
    {"pid": 42, "id": 3, "inc": 7, "ev": None},
    {"pid": 42, "id": 3, "inc": 7, "trap_exits": "yes"},
    {"id": 3, "inc": 7},
])
def test_a_ready_datagram_that_does_not_fit_is_refused(payload: dict[str, Any]) -> None:
    assert parse_ready(pack(payload)) is None


@pytest.mark.parametrize("data", [b"", b"\xc1", b"\x93\x01"])
def test_a_ready_datagram_that_is_not_msgpack_is_refused(data: bytes) -> None:
    assert parse_ready(data) is None


@pytest.mark.parametrize(("count", "logged"), [
    (1, True), (10, True), (11, False), (999, False), (1000, True), (1001, False),
    (5000, True),
])
def test_dropped_frames_are_logged_first_ten_then_one_in_a_thousand(
        count: int, logged: bool) -> None:
    assert worth_logging(count) is logged


# -- the zygote's stream and boot pipe ----------------------------------------------------------
def test_a_frame_is_its_length_in_four_big_endian_bytes_then_msgpack() -> None:
    assert encode_frame({"op": "exit"}) == len(pack({"op": "exit"})).to_bytes(4, "big") \
        + pack({"op": "exit"})


def test_frames_are_reassembled_from_any_split_of_the_stream() -> None:
    values = [{"op": "exit"}, None, "x" * 70_000, [1, 2], {}]
    stream = b"".join(encode_frame(v) for v in values)
    for size in (1, 3, 4, 5, 1000, len(stream)):
        decoder = FrameDecoder()
        got = []
        for i in range(0, len(stream), size):
            got += decoder.feed(stream[i:i + size])
        assert got == values, size


def test_an_incomplete_frame_waits_for_the_rest() -> None:
    decoder = FrameDecoder()
    frame = encode_frame([1, 2, 3])
    assert decoder.feed(frame[:-1]) == []
    assert decoder.feed(b"") == []
    assert decoder.feed(frame[-1:]) == [[1, 2, 3]]


def test_a_frame_that_is_not_msgpack_raises() -> None:
    with pytest.raises(ProtocolError):
        FrameDecoder().feed((1).to_bytes(4, "big") + b"\xc1")


BOOT = {"dir": "/d", "store": "/d/store", "durability": "commit", "max_message_bytes": 16,
        "id": 1, "name": "a", "args": {"x": 1}}


@pytest.mark.parametrize("request_", [
    ForkRequest(1, BOOT, ("m1", "pkg.m2")), ForkRequest(MAX_U63, BOOT), ExitRequest(),
])
def test_a_zygote_request_round_trips(request_: ForkRequest | ExitRequest) -> None:
    (msg,) = FrameDecoder().feed(encode_zygote_request(request_))
    assert parse_zygote_request(msg) == request_


@pytest.mark.parametrize("msg", [
    {"op": "fork", "req": 0, "boot": BOOT, "preload": []},
    {"op": "fork", "req": "1", "boot": BOOT, "preload": []},
    {"op": "fork", "req": 1, "boot": None, "preload": []},
    {"op": "fork", "req": 1, "preload": []},
    {"op": "fork", "req": 1, "boot": BOOT, "preload": "m1"},
    {"op": "fork", "req": 1, "boot": BOOT, "preload": [1]},
    {"op": "nope"}, {}, [1], "exit", None,
])
def test_a_zygote_request_that_does_not_fit_is_ignored(msg: Any) -> None:
    assert parse_zygote_request(msg) is None


@pytest.mark.parametrize("frame", [
    Forked(1, 9), Forked(1 << 63, MAX_PID), Refused(2, "mod", "killed it with SIGSEGV"),
    Exited(9, -9), Exited(9, 0), Exited(MAX_PID, 255), Exited(1, -255),
])
def test_a_zygote_frame_round_trips(frame: Forked | Refused | Exited) -> None:
    (msg,) = FrameDecoder().feed(encode_zygote_frame(frame))
    assert parse_zygote_frame(msg) == frame


@pytest.mark.parametrize("msg", [
    {"op": "forked", "req": 0, "pid": 9},
    {"op": "forked", "req": (1 << 63) + 1, "pid": 9},
    {"op": "forked", "req": True, "pid": 9},
    {"op": "forked", "req": 1, "pid": MAX_PID + 1},
    {"op": "forked", "req": 1},
    {"op": "exited", "pid": 0, "code": 0},
    {"op": "exited", "pid": 9, "code": 256},
    {"op": "exited", "pid": 9, "code": -256},
    {"op": "exited", "pid": 9, "code": 1.0},
    {"op": "refused", "req": 1, "module": b"m", "error": "e"},
    {"op": "refused", "req": 1, "module": "m"},
    {"op": "fork", "req": 1, "pid": 9},
    {}, [1], None,
])
def test_a_zygote_frame_that_does_not_fit_is_refused(msg: Any) -> None:
    assert parse_zygote_frame(msg) is None


def test_the_node_fields_of_a_boot_record() -> None:
    # One definition (store/records.py NodeFields); the zygote's warm children use it.
    assert NodeFields.from_wire(BOOT) == NodeFields("/d", "/d/store", "commit", 16)
