"""The wire format: the only place frames are built or parsed.

A message on any beamish ZeroMQ socket is a multipart list of five frames::

    [version, kind, msg_id, sender, payload]

``version`` is one byte (``PROTOCOL_VERSION``), ``kind`` one byte (`Kind`), ``msg_id`` an
opaque id that matches replies to requests, ``sender`` the address a reply goes to (may be
empty) and ``payload`` msgpack bytes. This module imports no zmq: it is pure and tested
without sockets. Nothing is ever pickled.
"""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass
from typing import Any

import msgpack

from ._errors import EncodeError, PayloadTooLarge, ProtocolError

PROTOCOL_VERSION = 1
DEFAULT_MAX_MESSAGE_BYTES = 16 * 1024 * 1024
_VERSION_FRAME = bytes([PROTOCOL_VERSION])


class Kind(enum.IntEnum):
    """What an envelope carries."""

    CALL = 1  # a request that expects a REPLY with the same msg_id
    CAST = 2  # fire-and-forget
    REPLY = 3  # the answer to a CALL
    INFO = 4  # a notification (agent -> node: ready, escalate, ...)
    EXIT = 5  # an exit notification
    SYSTEM = 6  # runtime-internal control (stop), never reaches user callbacks
    RING = 7  # doorbell: "your durable mailbox has something new"; carries no data


_KINDS = {int(kind): kind for kind in Kind}  # a dict lookup is ~20x cheaper than Kind(n)


@dataclass(frozen=True, slots=True)
class Envelope:
    """One decoded message.

    Attributes:
        kind: what it carries.
        msg_id: matches a REPLY to its CALL; empty when unused.
        sender: where a reply goes (an address or a routing id); empty when unused.
        payload: the decoded msgpack value.
    """

    kind: Kind
    msg_id: bytes = b""
    sender: bytes = b""
    payload: Any = None


def new_msg_id() -> bytes:
    """Return a fresh 16-byte random message id."""
    return os.urandom(16)


def _default(value: Any) -> Any:
    # pydantic models travel as their plain data; everything else is refused.
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return dump(mode="json")
    if isinstance(value, (tuple, set, frozenset)):
        return list(value)
    raise TypeError(type(value).__name__)


def pack(value: Any, *, where: str = "a message", limit: int | None = None) -> bytes:
    """Encode ``value`` as msgpack.

    Args:
        value: msgpack data or pydantic models.
        where: named in the error message (e.g. "the state of agent 'c1'").
        limit: if given, the largest allowed encoded size.

    Returns:
        The encoded bytes.

    Raises:
        EncodeError: a value msgpack cannot carry.
        PayloadTooLarge: the encoding is over ``limit``.
    """
    try:
        data: bytes = msgpack.packb(value, default=_default, use_bin_type=True, datetime=False)
    except TypeError as exc:
        raise EncodeError(str(exc).split(":")[-1].strip() or type(value).__name__, where) from None
    except (OverflowError, ValueError) as exc:
        raise EncodeError(f"{type(value).__name__} ({exc})", where) from None
    if limit is not None and len(data) > limit:
        raise PayloadTooLarge(len(data), limit)
    return data


def unpack(data: bytes) -> Any:
    """Decode msgpack bytes made by `pack`.

    Raises:
        ProtocolError: the bytes are not valid msgpack.
    """
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=False)
    except (msgpack.UnpackException, ValueError, TypeError) as exc:
        raise ProtocolError(f"payload is not valid msgpack: {exc}") from None


def encode(env: Envelope, *, limit: int | None = None) -> list[bytes]:
    """Build the frame list for ``env``.

    Raises:
        EncodeError, PayloadTooLarge: as `pack`.
    """
    payload = pack(env.payload, limit=limit)
    return [_VERSION_FRAME, bytes([int(env.kind)]), env.msg_id, env.sender, payload]


def encode_ring(kind: Kind, msg_id: bytes = b"", payload: bytes = b"") -> bytes:
    """Build the compact one-frame form used for doorbells: a ring, a reply ring that
    carries the packed reply, a system request. One frame costs one ZeroMQ send instead
    of five on the hot path::

        [version][kind][len(msg_id)][msg_id][packed payload, or nothing for None]

    Args:
        kind: what it carries.
        msg_id: at most 255 bytes.
        payload: already-packed msgpack bytes (`pack`), or b"" for no payload.
    """
    return bytes((PROTOCOL_VERSION, int(kind), len(msg_id))) + msg_id + payload


def decode(frames: list[bytes], *, limit: int = DEFAULT_MAX_MESSAGE_BYTES) -> Envelope:
    """Parse a frame list made by `encode` (five frames) or `encode_ring` (one frame).

    Args:
        frames: the multipart message (routing frames already removed).
        limit: the largest accepted payload, in bytes.

    Raises:
        ProtocolError: wrong frame count, version, kind, or bad msgpack.
        PayloadTooLarge: the payload frame is over ``limit``.
    """
    if len(frames) == 1:
        return _decode_ring(bytes(frames[0]), limit)
    if len(frames) != 5:
        raise ProtocolError(f"expected 1 or 5 frames, got {len(frames)}")
    version, kind, msg_id, sender, payload = (bytes(f) for f in frames)
    if version != _VERSION_FRAME:
        raise ProtocolError(f"unsupported protocol version {version!r}")
    if len(kind) != 1:
        raise ProtocolError(f"bad kind frame {kind!r}")
    try:
        k = _KINDS[kind[0]]
    except KeyError:
        raise ProtocolError(f"unknown kind {kind[0]}") from None
    if len(payload) > limit:
        raise PayloadTooLarge(len(payload), limit)
    return Envelope(k, msg_id, sender, unpack(payload))


def _decode_ring(frame: bytes, limit: int) -> Envelope:
    if len(frame) < 3 or frame[0] != PROTOCOL_VERSION:
        raise ProtocolError("bad compact frame header")
    try:
        kind = _KINDS[frame[1]]
    except KeyError:
        raise ProtocolError(f"unknown kind {frame[1]}") from None
    end = 3 + frame[2]
    if len(frame) < end:
        raise ProtocolError("truncated compact frame")
    rest = frame[end:]
    if len(rest) > limit:
        raise PayloadTooLarge(len(rest), limit)
    return Envelope(kind, frame[3:end], b"", unpack(rest) if rest else None)
