"""The wire format, without sockets."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from beamish.mailbox import (
    EncodeError,
    Envelope,
    Kind,
    PayloadTooLarge,
    ProtocolError,
    decode,
    encode,
    encode_ring,
    pack,
    unpack,
)


def test_envelope_round_trip():
    env = Envelope(Kind.CALL, b"id1", b"sender", {"a": [1, 2.5, None, b"x", "s"]})
    assert decode(encode(env)) == env


def test_compact_ring_round_trip():
    assert decode([encode_ring(Kind.RING)]) == Envelope(Kind.RING, b"", b"", None)
    frame = encode_ring(Kind.REPLY, b"m" * 16, pack({"ok": True}))
    assert decode([frame]) == Envelope(Kind.REPLY, b"m" * 16, b"", {"ok": True})


@pytest.mark.parametrize("frames", [
    [], [b"\x01"], [b"\x02\x07\x00"], [b"\x01\x63\x00"], [b"\x01\x07\x05ab"],
    [b"\x02", b"\x01", b"", b"", b"\x80"], [b"\x01", b"\x99", b"", b"", b"\x80"],
    [b"\x01", b"\x01\x01", b"", b"", b"\x80"], [b"\x01", b"\x01", b"", b"", b"\xc1"],
    [b"a", b"b"],
])
def test_malformed_frames_raise_protocol_error(frames):
    with pytest.raises(ProtocolError):
        decode(frames)


def test_oversized_payload_is_refused_both_ways():
    with pytest.raises(PayloadTooLarge) as err:
        pack(b"x" * 100, limit=50)
    assert err.value.size > 50 and err.value.limit == 50
    with pytest.raises(PayloadTooLarge):
        decode(encode(Envelope(Kind.CAST, payload=b"x" * 100)), limit=50)


def test_pydantic_models_travel_as_data_and_other_objects_are_refused():
    class Turn(BaseModel):
        role: str
        text: str
    assert unpack(pack(Turn(role="user", text="hi"))) == {"role": "user", "text": "hi"}
    with pytest.raises(EncodeError, match="object"):
        pack({"x": object()}, where="the state of agent 'a'")
