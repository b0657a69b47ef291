"""The runtime's frames: every message between its processes that is not a user's own,
built and parsed here and nowhere else.

    sender/node -> agent inbox     `ring_frame` (a doorbell: seq + the mailbox record
                                   inline), `stop_frame`; parsed by `parse_agent_inbox`
                                   (straight from the socket's frames: the inline record
                                   stays packed, compared with the stored bytes)
    agent -> caller's inbox        `reply_frame`; parsed by `parse_reply_ring`
    agent -> node (report socket)  `report_frames` (an INFO envelope); `parse_report`
    agent -> node (ready datagram) `ready_datagram`; `parse_ready`
    any -> node (sessions datagram) `WAKE_HINT`, `idle_hint`, `spawned_hints`;
                                   `parse_session_hint`
    node <-> zygote (stream)       `encode_zygote_request` / `parse_zygote_request`,
                                   `encode_zygote_frame` / `parse_zygote_frame`, framed by
                                   `encode_frame` / `FrameDecoder` (4-byte length + msgpack)
    zygote -> warm child (pipe)    `encode_frame` (the boot record) / `FrameDecoder`

``beamish.mailbox`` owns the envelope codec (`encode`, `encode_ring`, `pack`); this module
is the runtime's frames on top of it. Everything that arrives from a process that runs user
code (agents, the zygote) is untrusted: each parse function checks every field and returns
a record, or ``None``/`Rejected` for a frame that is then dropped and counted by its caller.
Pure: no sockets, no files, no processes. (The control protocol, ``{"op", ...}`` requests
from clients and agents to the node and its ``{"ok", ...}`` answers, is `control.py`'s and
the node's.)
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import Any, NamedTuple

from beamish.mailbox import (
    PROTOCOL_VERSION,
    Envelope,
    Kind,
    ProtocolError,
    encode,
    encode_ring,
    pack,
    unpack,
)

# Linux pids are at most 2**22 (pid_max); ids, incarnations and seqs are LMDB u64 keys.
MAX_PID = 1 << 22
MAX_U63 = (1 << 63) - 1
MAX_REASON_CHARS = 4096
SEQ_BYTES = 8  # a ring's msg_id: the message's mailbox seq, big-endian
# The boot fields every agent of a node shares: a warm zygote child is prepared with them.
_LENGTH = struct.Struct(">I")


def worth_logging(count: int) -> bool:
    """Whether the ``count``-th dropped frame is logged: the first ten, then one in a
    thousand, so that a flood of garbage cannot flood the log (all are counted)."""
    return count <= 10 or count % 1000 == 0


def _is_int(value: Any, low: int, high: int) -> bool:
    # bool is an int subclass; a float or a string is never a pid or an id.
    return type(value) is int and low <= value <= high


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# -- doorbells and system requests to an agent ------------------------------------------------
class Ring(NamedTuple):
    """A doorbell for the mailbox message ``seq``. A NamedTuple: one is built per message
    on the hot path, and it unpacks as ``(seq, packed)``.

    Attributes:
        seq: the message's sequence number in the agent's mailbox.
        packed: the mailbox record carried inline, still packed (a hint: the mailbox is
            the truth, and the agent compares the two as bytes), or b"" when it was too
            big to carry.
    """

    seq: int
    packed: bytes


@dataclass(frozen=True, slots=True)
class StopRequest:
    """The node asks an agent to stop (its ``terminate`` runs) with ``reason``."""

    reason: str


def ring_frame(seq: int, inline: bytes = b"") -> bytes:
    """The doorbell for message ``seq`` of an agent's mailbox; ``inline``: the packed
    mailbox record, carried so the agent need not read it back (b"": not carried)."""
    return encode_ring(Kind.RING, seq.to_bytes(SEQ_BYTES, "big"), inline)


def stop_frame(reason: str) -> bytes:
    """The system request that stops an agent with ``reason``."""
    return encode_ring(Kind.SYSTEM, b"", pack({"op": "stop", "reason": reason}))


_RING_HEAD = bytes((PROTOCOL_VERSION, int(Kind.RING), SEQ_BYTES))
_SYSTEM_HEAD = bytes((PROTOCOL_VERSION, int(Kind.SYSTEM), 0))


def parse_agent_inbox(frames: list[bytes]) -> Ring | StopRequest | None:
    """What an agent's inbox received (the socket's frames): a ring, a stop request, or
    None (dropped: any process of this user can write to the inbox). A ring's inline
    record is not decoded: the agent reads the stored one and compares the bytes."""
    if len(frames) != 1:
        return None
    frame = frames[0]
    head = frame[:3]
    if head == _RING_HEAD and len(frame) >= 3 + SEQ_BYTES:
        return Ring(int.from_bytes(frame[3:3 + SEQ_BYTES], "big"), frame[3 + SEQ_BYTES:])
    if head == _SYSTEM_HEAD:
        try:
            payload = unpack(frame[3:])
        except ProtocolError:
            return None
        if isinstance(payload, dict) and payload.get("op") == "stop":
            return StopRequest(str(payload.get("reason", "normal")))
    return None


# -- replies to a caller ------------------------------------------------------------------------
class ReplyRing(NamedTuple):
    """A reply ring: the reply record committed for call ``msg_id``, carried inline (a
    NamedTuple: one is built per call)."""

    msg_id: bytes
    reply: dict[Any, Any]


def reply_frame(msg_id: bytes, packed_reply: bytes) -> bytes:
    """The ring an agent sends a caller once the reply to ``msg_id`` is committed, carrying
    the reply record (already packed)."""
    return encode_ring(Kind.REPLY, msg_id, packed_reply)


def parse_reply_ring(env: Envelope) -> ReplyRing | None:
    """A reply ring from a caller's inbox, or None for anything else (dropped: the reply
    is in LMDB all the same)."""
    if env.kind is Kind.REPLY and isinstance(env.payload, dict):
        return ReplyRing(env.msg_id, env.payload)
    return None


# -- reports from agents to the node ------------------------------------------------------------
class ReportKind(enum.StrEnum):
    """What an agent reports to the node."""

    READY = "ready"  # its init/recover ran
    DEAD_LETTERED = "dead_lettered"  # a cast it could not handle went to the dead letters
    RECOVER_FAILED = "recover_failed"  # its recover raised or returned nonsense
    TERMINATE_FAILED = "terminate_failed"  # its terminate raised


_REPORT_KINDS = frozenset(kind.value for kind in ReportKind)
_REPORT_FIELDS = frozenset(("ev", "id", "inc", "pid", "trap_exits", "reason", "seq"))


@dataclass(frozen=True, slots=True)
class Report:
    """One valid report from an agent process (by its report socket or, for ``ready``,
    its ready datagram).

    Attributes:
        ev: what it reports.
        id: the agent's id.
        inc: its incarnation number.
        pid: the reporting process.
        trap_exits: (ready) whether the agent traps exits.
        reason: (the failure reports) what happened, as text.
        seq: (dead_lettered) the message's sequence number.
    """

    ev: ReportKind
    id: int
    inc: int
    pid: int
    trap_exits: bool = False
    reason: str = ""
    seq: int | None = None


@dataclass(frozen=True, slots=True)
class Rejected:
    """A payload that is not a valid report, and why (for the log; it is dropped)."""

    why: str


def report_payload(report: Report) -> dict[str, Any]:
    """The msgpack map a report travels as."""
    payload: dict[str, Any] = {"ev": str(report.ev), "id": report.id, "inc": report.inc,
                               "pid": report.pid}
    if report.ev is ReportKind.READY:
        payload["trap_exits"] = report.trap_exits
    else:
        payload["reason"] = report.reason
    if report.seq is not None:
        payload["seq"] = report.seq
    return payload


def report_frames(report: Report) -> list[bytes]:
    """The INFO envelope an agent sends to the node's report socket."""
    return encode(Envelope(Kind.INFO, payload=report_payload(report)))


def ready_datagram(report: Report) -> bytes:
    """The datagram an agent forked by the zygote writes to its ready socket."""
    return pack(report_payload(report))


def _id_fields(payload: dict[Any, Any]) -> tuple[int, int, int] | Rejected:
    """The ``id``, ``inc`` and ``pid`` of a report, each checked."""
    got: list[int] = []
    for key, high in (("id", MAX_U63), ("inc", MAX_U63), ("pid", MAX_PID)):
        value: Any = payload.get(key)
        if not _is_int(value, 1, high):
            return Rejected(f"field {key!r} is {_show(value)}, not an integer in [1, {high}]")
        got.append(value)
    return got[0], got[1], got[2]


def _trap_exits(payload: dict[Any, Any]) -> bool | Rejected:
    value = payload.get("trap_exits", False)
    if type(value) is not bool:
        return Rejected(f"field 'trap_exits' is {_show(value)}, not a bool")
    return value


def parse_report(payload: Any) -> Report | Rejected:
    """Validate a report from the node's report socket (a decoded INFO payload).

    Returns:
        The `Report`, or a `Rejected` naming the first field that does not fit (an unknown
        field included).
    """
    if not isinstance(payload, dict):
        return Rejected(f"a report is a map, not {type(payload).__name__}")
    extra = [k for k in payload if k not in _REPORT_FIELDS]
    if extra:
        return Rejected(f"unknown fields {_show(extra)}")
    ev = payload.get("ev")
    if not isinstance(ev, str) or ev not in _REPORT_KINDS:
        return Rejected(f"unknown report kind {_show(ev)}")
    ids = _id_fields(payload)
    if isinstance(ids, Rejected):
        return ids
    trap_exits = _trap_exits(payload)
    if isinstance(trap_exits, Rejected):
        return trap_exits
    reason = payload.get("reason", "")
    if not isinstance(reason, str):
        return Rejected(f"field 'reason' is {_show(reason)}, not a string")
    seq: int | None = None
    if "seq" in payload:
        seq = payload["seq"]
        if not _is_int(seq, 1, MAX_U63):
            return Rejected(f"field 'seq' is {_show(seq)}, not an integer in [1, {MAX_U63}]")
    return Report(ReportKind(ev), *ids, trap_exits, reason[:MAX_REASON_CHARS], seq)


def parse_ready(data: bytes) -> Report | None:
    """Validate a ready datagram (``ev`` may be left out; fields other than the ready
    report's are ignored); None if it does not fit (it is then dropped and counted)."""
    try:
        payload = unpack(data)
    except (ProtocolError, ValueError, TypeError):
        return None
    if not isinstance(payload, dict) or payload.get("ev", "ready") != "ready":
        return None
    ids = _id_fields(payload)
    trap_exits = _trap_exits(payload)
    if isinstance(ids, Rejected) or isinstance(trap_exits, Rejected):
        return None
    return Report(ReportKind.READY, *ids, trap_exits=trap_exits)


# -- the zygote's stream and boot pipe: length-prefixed msgpack ----------------------------------
def encode_frame(value: Any) -> bytes:
    """One msgpack value with its 4-byte big-endian length prefix."""
    data = pack(value)
    return _LENGTH.pack(len(data)) + data


class FrameDecoder:
    """Reassembles `encode_frame` frames from the chunks a stream delivers."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, chunk: bytes) -> list[Any]:
        """Add ``chunk``; return the values of the frames it completed, oldest first.

        Raises:
            ProtocolError: a complete frame is not msgpack (the stream cannot be trusted
                any more).
        """
        buf = self._buf
        buf += chunk
        values = []
        while len(buf) >= _LENGTH.size:
            (n,) = _LENGTH.unpack_from(buf)
            end = _LENGTH.size + n
            if len(buf) < end:
                break
            values.append(unpack(bytes(buf[_LENGTH.size:end])))
            del buf[:end]
        return values


@dataclass(frozen=True, slots=True)
class ForkRequest:
    """The node asks the zygote for an agent process.

    Attributes:
        req: the request's number (its answer names it).
        boot: the agent's boot record.
        preload: modules to import in the zygote first.
    """

    req: int
    boot: dict[str, Any]
    preload: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ExitRequest:
    """The node tells the zygote to kill its agents and exit."""


@dataclass(frozen=True, slots=True)
class Forked:
    """The zygote's answer to fork request ``req``: the agent's process is ``pid``."""

    req: int
    pid: int


@dataclass(frozen=True, slots=True)
class Refused:
    """The zygote's answer to fork request ``req``: importing ``module`` kills the
    importing process (``error`` says how)."""

    req: int
    module: str
    error: str


@dataclass(frozen=True, slots=True)
class Exited:
    """The zygote reaped agent ``pid``, which ended with Popen-style ``code``."""

    pid: int
    code: int


ZygoteRequest = ForkRequest | ExitRequest
ZygoteFrame = Forked | Refused | Exited


def encode_zygote_request(request: ZygoteRequest) -> bytes:
    """The framed request for the zygote's stream."""
    if isinstance(request, ExitRequest):
        return encode_frame({"op": "exit"})
    return encode_frame({"op": "fork", "req": request.req, "boot": request.boot,
                         "preload": list(request.preload)})


def parse_zygote_request(msg: Any) -> ZygoteRequest | None:
    """A request the zygote read from the node; None if it is not one (ignored)."""
    if not isinstance(msg, dict):
        return None
    op = msg.get("op")
    if op == "exit":
        return ExitRequest()
    preload = msg.get("preload", [])
    if op == "fork" and _is_int(msg.get("req"), 1, 1 << 63) \
            and isinstance(msg.get("boot"), dict) and isinstance(preload, list) \
            and all(isinstance(m, str) for m in preload):
        return ForkRequest(msg["req"], msg["boot"], tuple(preload))
    return None


def encode_zygote_frame(frame: ZygoteFrame) -> bytes:
    """The framed message for the node, from the zygote."""
    if isinstance(frame, Forked):
        return encode_frame({"op": "forked", "req": frame.req, "pid": frame.pid})
    if isinstance(frame, Refused):
        return encode_frame({"op": "refused", "req": frame.req, "module": frame.module,
                             "error": frame.error})
    return encode_frame({"op": "exited", "pid": frame.pid, "code": frame.code})


def parse_zygote_frame(msg: Any) -> ZygoteFrame | None:
    """Check one frame from the zygote (which imports user code); None if it does not fit."""
    if not isinstance(msg, dict):
        return None
    op = msg.get("op")
    if op == "forked" and _is_int(msg.get("req"), 1, 1 << 63) \
            and _is_int(msg.get("pid"), 1, MAX_PID):
        return Forked(msg["req"], msg["pid"])
    if op == "exited" and _is_int(msg.get("pid"), 1, MAX_PID) \
            and _is_int(msg.get("code"), -255, 255):
        return Exited(msg["pid"], msg["code"])
    if op == "refused" and _is_int(msg.get("req"), 1, 1 << 63) \
            and isinstance(msg.get("module"), str) and isinstance(msg.get("error"), str):
        return Refused(msg["req"], msg["module"], msg["error"])
    return None


# -- session hints (Unix datagrams to the node's sessions socket) ------------------------------
# Only hints: the store's wakes table is the truth (the node scans it every second), so a
# lost or forged datagram costs latency at most, never a message.
WAKE_HINT = b"w"
"""A sender appended to a sleeping agent's mailbox (and marked it to wake): look now."""
_IDLE = struct.Struct(">cQQ")


@dataclass(frozen=True, slots=True)
class IdleHint:
    """An agent's process has been idle for its ``idle_timeout``: put it to sleep.

    Attributes:
        id: the agent's id.
        inc: the incarnation that says so (a stale one is ignored).
    """

    id: int
    inc: int


SPAWNED_HINT_MAX_BYTES = 60_000  # a datagram of names stays below the socket's limit


@dataclass(frozen=True, slots=True)
class SpawnedHint:
    """A client registered lazy agents ``names`` itself (straight into the store): emit
    their ``spawned`` events."""

    names: tuple[str, ...]


def spawned_hints(names: list[str]) -> tuple[bytes, int]:
    """The datagram a client sends after it registered lazy agents itself, for as many of
    ``names`` (at least one) as fit in `SPAWNED_HINT_MAX_BYTES`, and how many it holds.
    Names hold no NUL (`NAME_RULE`): NUL separates them."""
    out: list[bytes] = []
    size = 1
    for name in names:
        raw = name.encode()
        if out and size + len(raw) + 1 > SPAWNED_HINT_MAX_BYTES:
            break
        out.append(raw)
        size += len(raw) + 1
    return b"s" + b"\0".join(out), len(out)


def idle_hint(agent_id: int, inc: int) -> bytes:
    """The datagram an idle agent sends the node's sessions socket."""
    return _IDLE.pack(b"i", agent_id, inc)


def parse_session_hint(data: bytes) -> IdleHint | SpawnedHint | bytes | None:
    """A datagram read on the sessions socket: an `IdleHint`, a `SpawnedHint`,
    `WAKE_HINT`, or None when it is none of them (any process of the user can send one:
    ignored)."""
    if data == WAKE_HINT:
        return WAKE_HINT
    if data[:1] == b"s" and len(data) > 1:
        try:
            return SpawnedHint(tuple(data[1:].decode().split("\0")))
        except UnicodeDecodeError:
            return None
    if len(data) == _IDLE.size and data[:1] == b"i":
        _, agent_id, inc = _IDLE.unpack(data)
        return IdleHint(agent_id, inc)
    return None
