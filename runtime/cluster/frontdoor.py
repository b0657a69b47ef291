"""The node's TCP front door: one ROUTER, a CURVE server, for remote clients.

    remote client ══CURVE/TCP══▶ ROUTER ─▶ relay thread ─┬─▶ DEALER ─▶ node control (ipc)
                                   ▲                    └─▶ pool: call/cast (Messenger)
              ZAP thread ──admits──┘ (DIR/authorized/ only)

A handshake is checked by the ZAP thread against the keys in ``DIR/authorized/`` (re-read
when that dir changes); a peer that fails it (unknown key, no CURVE, garbage bytes) never
gets a frame to the relay: libzmq drops the connection, the socket monitor counts it as a
refusal. Control requests are relayed to the node's own control socket unchanged (their
ids swapped for the relay's own), so they are served exactly as local ones; ``call``,
``cast`` and ``cast_many`` run on the relay's pool with the node's store, acknowledged
once durable. At most `MAX_INFLIGHT` of those run at once: past that the relay stops
reading, and TCP pushes back on the clients (bounded high-water marks, never a silent
drop); a reply that cannot be delivered (its client gone or not reading) is counted.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import zmq
import zmq.utils.monitor
import zmq.utils.z85

from beamish.mailbox import (
    DEFAULT_MAX_MESSAGE_BYTES,
    EncodeError,
    Envelope,
    Kind,
    PayloadTooLarge,
    ProtocolError,
    decode,
    encode,
    ipc_address,
    zmq_size_ceiling,
)

from .._paths import NodePaths
from .._types import WireMap
from .._validation import check_lookup_name, check_timeout
from ..errors import (
    BeamishError,
    BeamishInternalError,
    ConfigError,
    ErrorReply,
    MessageTooLarge,
)
from ..messaging.messenger import Messenger
from ..messaging.wire import worth_logging
from ..store.protocol import Store
from .keys import KeyPair, authorized_keys, load_pair

log = logging.getLogger("beamish.frontdoor")
MAX_INFLIGHT = 256  # calls/casts accepted at once; past that the relay stops reading
WORKERS = 64  # of which this many run at once (a call holds its thread until its reply)
CLOSE_WAIT_S = 5.0  # how long closing waits for calls still running
REQUEST_ROOM = 4096  # a request's own fields, around a message of max_message_bytes
HWM = 1000  # messages queued per peer, each way
FORWARDED_KEPT_S = 3600.0  # a relayed request unanswered this long is forgotten
ZAP_ENDPOINT = "inproc://zeromq.zap.01"
MESSAGE_OPS = frozenset({"call", "cast", "cast_many"})
_REFUSALS: dict[int, str] = {
    zmq.EVENT_HANDSHAKE_FAILED_AUTH: "auth",
    zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL: "protocol",
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL: "other",
}
_WHY = {"auth": "its key is not authorized", "protocol": "not ZMTP with CURVE",
        "other": "the handshake failed", "closed": "closed before its handshake: garbage?"}


@dataclass(frozen=True, slots=True)
class TransportStatus:
    """The TCP front door of a node, from `Node.transport` (``beamish node status``).

    Attributes:
        listen: the address it listens on (``tcp://HOST:PORT``).
        public_key: the node's public key (Z85): what clients authorize.
        authorized: how many client keys it admits now.
        connections: TCP connections that completed the CURVE handshake.
        refused: connections refused before a frame got in (wrong key, no CURVE,
            garbage): ``refused_auth`` (a key not authorized), ``refused_protocol`` (not
            ZMTP/CURVE) and the others (dropped mid-handshake).
        refused_auth: of those, keys not authorized.
        refused_protocol: of those, not speaking ZMTP with CURVE.
        requests: requests received from admitted clients.
        dropped: frames from admitted clients that were not a valid request.
        undeliverable: answers whose client had gone or stopped reading.
        max_message_bytes: the node's limit for one request.
    """

    listen: str
    public_key: str
    authorized: int
    connections: int
    refused: int
    refused_auth: int
    refused_protocol: int
    requests: int
    dropped: int
    undeliverable: int
    max_message_bytes: int

    @classmethod
    def from_wire(cls, data: WireMap) -> TransportStatus:
        """Read the node's answer to ``transport`` (a count an older node does not send
        reads as 0; its limit as the default)."""
        def n(key: str) -> int:
            return int(data.get(key, 0))
        return cls(str(data["listen"]), str(data["public_key"]), n("authorized"),
                   n("connections"), n("refused"), n("refused_auth"), n("refused_protocol"),
                   n("requests"), n("dropped"), n("undeliverable"),
                   int(data.get("max_message_bytes", DEFAULT_MAX_MESSAGE_BYTES)))


def open_front_door(listen: str, keys_dir: str, paths: NodePaths, store: Store,
                    max_message_bytes: int, messenger: Messenger | None = None) -> FrontDoor:
    """Read the node's keys from ``keys_dir`` and start its front door on ``listen``
    (``messenger``: what runs remote calls and casts; default: one on ``store``).

    Raises:
        ConfigError: naming ``cluster.keys`` (no keys there, or bad ones) or
            ``cluster.listen`` (cannot bind).
    """
    pair = load_pair(keys_dir, "cluster.keys")
    try:
        authorized_keys(keys_dir)  # a bad key file is refused now, not at the first client
    except ConfigError as exc:
        raise ConfigError(f"cluster.keys: {exc}") from None
    door = FrontDoor(listen, keys_dir, pair, paths, store, max_message_bytes, messenger)
    try:
        door.start()
    except BaseException:
        door.close()
        raise
    return door


class _Allowed:
    """The keys of ``DIR/authorized/``, re-read when the dir changes (ZAP thread only)."""

    def __init__(self, dir: str) -> None:
        self.dir = os.path.join(dir, "authorized")
        self.keys_dir = dir
        self.stamp = -1
        self.keys: frozenset[str] = frozenset()
        self.refresh()

    def refresh(self) -> None:
        try:
            stamp = os.stat(self.dir).st_mtime_ns
        except FileNotFoundError:
            stamp = 0
        if stamp != self.stamp:
            try:
                self.keys = frozenset(k.key for k in authorized_keys(self.keys_dir))
            except ConfigError as exc:  # keep the last good set; say why
                log.error("cannot reload the authorized keys: %s", exc)
                return
            self.stamp = stamp
            log.info("admitting %d authorized key(s) from %s", len(self.keys), self.dir)


class FrontDoor:
    """Listens on TCP as a CURVE server and serves remote clients (see the module doc).

    Args:
        listen: ``tcp://HOST:PORT``.
        keys_dir: the node's keys dir (its pair, and ``authorized/``).
        pair: the node's keys, read from it.
        paths: the node's paths (requests are relayed to its control socket).
        store: the node's store (calls and casts append there, as a local client's do).
        max_message_bytes: the node's limit for one request.
        messenger: runs the calls and casts (a cluster node routes replicated agents'
            to PostgreSQL); default: a `Messenger` on ``store``.
    """

    def __init__(self, listen: str, keys_dir: str, pair: KeyPair, paths: NodePaths,
                 store: Store, max_message_bytes: int,
                 messenger: Messenger | None = None) -> None:
        self.listen = listen
        self.pair = pair
        self.control_path = paths.control
        self.messenger = messenger or Messenger(paths, store, max_message_bytes)
        self.limit = max_message_bytes
        self.allowed = _Allowed(keys_dir)
        # Its own context: ZAP serves this context only; one I/O thread (see _on_monitor).
        self.ctx: zmq.Context[Any] = zmq.Context(io_threads=1)
        self.stopping = threading.Event()
        self.zap_stop = threading.Event()  # set once the ROUTER is closed
        self.counts = dict.fromkeys(("connections", "refused", "refused_auth",
                                     "refused_protocol", "requests", "dropped",
                                     "undeliverable"), 0)
        self.pool = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="beamish-tcp")
        self.running = 0  # calls/casts on the pool now (under _lock)
        self._threads: list[threading.Thread] = []
        self._local = threading.local()  # each pool thread's PUSH to the relay
        self._pushers: list[zmq.Socket[Any]] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start the authenticator, bind the ROUTER and start relaying.

        Raises:
            ConfigError: the address cannot be bound (in use, not an address here).
        """
        zap = self.ctx.socket(zmq.REP)
        zap.setsockopt(zmq.LINGER, 0)
        zap.bind(ZAP_ENDPOINT)  # before the ROUTER's first handshake
        router = self.ctx.socket(zmq.ROUTER)
        router.setsockopt(zmq.LINGER, 0)
        router.setsockopt(zmq.ROUTER_MANDATORY, 1)
        router.setsockopt(zmq.SNDHWM, HWM)
        router.setsockopt(zmq.RCVHWM, HWM)
        router.setsockopt(zmq.MAXMSGSIZE, zmq_size_ceiling(self.limit + REQUEST_ROOM))
        router.setsockopt(zmq.CURVE_SERVER, 1)
        router.setsockopt(zmq.CURVE_SECRETKEY, self.pair.secret.encode("ascii"))
        router.setsockopt(zmq.ZAP_DOMAIN, b"beamish")
        # Fail closed: without this, libzmq admits every CURVE client while no ZAP handler
        # is bound (the authenticator thread gone).
        router.setsockopt(zmq.ZAP_ENFORCE_DOMAIN, 1)
        monitor = router.get_monitor_socket(
            zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_HANDSHAKE_FAILED_AUTH
            | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
            | zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED)
        try:
            router.bind(self.listen)
        except zmq.ZMQError as exc:
            for sock in (monitor, router, zap):
                sock.close(linger=0)
            raise ConfigError(f"cluster.listen: cannot listen on {self.listen!r}: {exc}; "
                              "free that port or pick another") from None
        for target, name, sock_args in ((self._relay, "beamish-tcp", (router, monitor)),
                                        (self._zap, "beamish-zap", (zap,))):
            thread = threading.Thread(target=target, args=sock_args, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        log.info("listening on %s (CURVE; public key %s)", self.listen, self.pair.public)

    def status(self) -> TransportStatus:
        """The front door's figures now (any thread)."""
        c = self.counts
        return TransportStatus(self.listen, self.pair.public, len(self.allowed.keys),
                               c["connections"], c["refused"], c["refused_auth"],
                               c["refused_protocol"], c["requests"], c["dropped"],
                               c["undeliverable"], self.limit)

    # -- the authenticator ------------------------------------------------------------------------
    def _zap(self, sock: zmq.Socket[Any]) -> None:
        """Answer ZAP requests (RFC 27) until the ROUTER is closed: admit a CURVE client
        whose key is authorized, refuse every other (a failure here refuses too)."""
        while not self.zap_stop.is_set():
            if not sock.poll(100):
                continue
            frames = sock.recv_multipart()
            try:
                answer = self._zap_answer(frames)
            except Exception:  # noqa: BLE001 - refuse, say why, keep authenticating
                log.exception("the authenticator failed on a request: refused it")
                answer = [b"1.0", frames[1] if len(frames) > 1 else b"", b"500",
                          b"authenticator error", b"", b""]
            sock.send_multipart(answer)
        sock.close(linger=0)

    def _zap_answer(self, frames: list[bytes]) -> list[bytes]:
        if len(frames) < 6:  # only libzmq sends here; a REP must answer all the same
            return [b"1.0", frames[1] if len(frames) > 1 else b"", b"500",
                    b"malformed ZAP request", b"", b""]
        version, request_id, _domain, address, _identity, mechanism = frames[:6]
        key = ""
        if mechanism == b"CURVE" and len(frames) == 7 and len(frames[6]) == 32:
            key = zmq.utils.z85.encode(frames[6]).decode("ascii")
        self.allowed.refresh()
        ok = bool(key) and key in self.allowed.keys
        if not ok and worth_logging(self.counts["refused_auth"] + 1):
            log.warning("refused a %s client from %s: key %s is not in %s",
                        mechanism.decode(errors="replace"), address.decode(errors="replace"),
                        key or "(none)", self.allowed.dir)
        return [version, request_id, b"200" if ok else b"400",
                b"OK" if ok else b"key not authorized", key.encode("ascii") if ok else b"", b""]

    # -- the relay --------------------------------------------------------------------------------
    def _relay(self, router: zmq.Socket[Any], monitor: zmq.Socket[Any]) -> None:
        dealer = self.ctx.socket(zmq.DEALER)
        dealer.setsockopt(zmq.LINGER, 0)
        dealer.connect(ipc_address(self.control_path))
        results = self.ctx.socket(zmq.PULL)
        results.setsockopt(zmq.LINGER, 0)
        results.bind("inproc://frontdoor-results")
        relay = _Relay(self, router, dealer)
        pending: dict[int, None] = {}  # accepted connections, handshake not done (by fd)
        poller = zmq.Poller()
        for sock in (router, dealer, results, monitor):
            poller.register(sock, zmq.POLLIN)
        reading = True
        try:
            while not self.stopping.is_set():
                if reading != (relay.inflight < MAX_INFLIGHT):  # backpressure
                    reading = not reading
                    poller.modify(router, zmq.POLLIN if reading else 0)
                ready = dict(poller.poll(100))
                if monitor in ready:
                    self._on_monitor(monitor, pending)
                if results in ready:
                    while results.poll(0):
                        relay.inflight -= 1
                        relay.send(results.recv_multipart())
                if dealer in ready:
                    while dealer.poll(0):
                        relay.answered(dealer.recv_multipart())
                if router in ready:
                    for _ in range(1000):
                        if relay.inflight >= MAX_INFLIGHT or not router.poll(0):
                            break
                        relay.received(router.recv_multipart())
                relay.expire()
        except Exception:  # noqa: BLE001 - the node goes on; its remote clients cannot
            log.exception("the TCP front door failed: remote clients get no answer until "
                          "the node restarts")
        finally:
            for sock in (router, monitor, dealer, results):
                sock.close(linger=0)
            self.zap_stop.set()

    def _on_monitor(self, monitor: zmq.Socket[Any], pending: dict[int, None]) -> None:
        """Count the handshakes done and refused. A refusal libzmq reports (an unknown
        key, a peer without CURVE) is counted at once; a peer it drops at the greeting
        (garbage bytes) only shows as a connection closed before its handshake: counted
        when it closes. Handshake events do not say which connection they are about:
        each settles the oldest one pending (the context has one I/O thread, so this is
        exact unless handshakes overlap; the counts stay right, only their moment moves).
        """
        while monitor.poll(0):
            event = zmq.utils.monitor.recv_monitor_message(monitor)
            kind, fd = event["event"], int(event["value"])
            if kind == zmq.EVENT_ACCEPTED:
                pending[fd] = None
                continue
            if kind == zmq.EVENT_DISCONNECTED:
                if fd not in pending:
                    continue
                del pending[fd]
                why = "closed"
            else:
                if pending:
                    del pending[next(iter(pending))]
                if kind == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                    self.counts["connections"] += 1
                    continue
                why = _REFUSALS[kind]
            self.counts["refused"] += 1
            if why in ("auth", "protocol"):
                self.counts["refused_" + why] += 1
            if worth_logging(self.counts["refused"]):
                log.warning("refused a TCP connection to %s (%s; %d refused so far)",
                            self.listen, _WHY[why], self.counts["refused"])

    # -- calls and casts (pool threads) -----------------------------------------------------------
    def _message(self, ident: bytes, env: Envelope) -> None:
        with self._lock:
            self.running += 1
        try:
            answer = message_answer(self.messenger, env.payload)
        finally:
            with self._lock:
                self.running -= 1
        try:
            frames = encode(Envelope(Kind.REPLY, env.msg_id, b"", answer))
        except (EncodeError, PayloadTooLarge) as exc:
            frames = encode(Envelope(Kind.REPLY, env.msg_id, b"", _error(BeamishInternalError(
                f"the answer cannot be sent back: {exc}"))))
        sock: zmq.Socket[Any] | None = getattr(self._local, "sock", None)
        if sock is None:
            sock = self._local.sock = self.ctx.socket(zmq.PUSH)
            sock.setsockopt(zmq.LINGER, 0)
            sock.connect("inproc://frontdoor-results")
            with self._lock:
                self._pushers.append(sock)
        sock.send_multipart([ident, *frames])

    def close(self) -> None:
        """Stop relaying and authenticating; close every socket and the context."""
        self.stopping.set()
        for thread in self._threads:  # the relay first: it closes the ROUTER, then ZAP ends
            thread.join(5.0)
        self.zap_stop.set()
        self.pool.shutdown(wait=False, cancel_futures=True)
        deadline = time.monotonic() + CLOSE_WAIT_S
        while self.running and time.monotonic() < deadline:
            time.sleep(0.01)
        if self.running:
            # Their sockets must not be closed under them; the process is exiting anyway.
            log.warning("%d remote call(s) still waiting as the node stops: their clients "
                        "get no answer", self.running)
            return
        for sock in self._pushers:
            sock.close(linger=0)
        self.ctx.destroy(linger=0)
        self.messenger.close()


class _Relay:
    """The relay thread's bookkeeping: requests relayed to the control socket and the
    calls/casts running on the pool."""

    def __init__(self, door: FrontDoor, router: zmq.Socket[Any], dealer: zmq.Socket[Any]) -> None:
        self.door = door
        self.router = router
        self.dealer = dealer
        self.inflight = 0
        self.ids = itertools.count(1)
        self.forwarded: dict[bytes, tuple[bytes, bytes, float]] = {}  # our id -> client's

    def received(self, frames: list[bytes]) -> None:
        """A request from an admitted client: relay it, or run it on the pool."""
        counts = self.door.counts
        counts["requests"] += 1
        if len(frames) != 6:
            counts["dropped"] += 1
            return
        try:
            env = decode(frames[1:], limit=self.door.limit + REQUEST_ROOM)
        except PayloadTooLarge as exc:
            counts["dropped"] += 1
            self.send([frames[0], *encode(Envelope(Kind.REPLY, frames[3], b"", _error(
                MessageTooLarge(exc.size, exc.limit, what="this request to the node"))))])
            return
        except ProtocolError:
            counts["dropped"] += 1
            return
        if env.kind is not Kind.CALL or not isinstance(env.payload, dict) \
                or not isinstance(env.payload.get("op"), str):
            counts["dropped"] += 1
            return
        if env.payload["op"] in MESSAGE_OPS:
            self.inflight += 1
            self.door.pool.submit(self.door._message, frames[0], env)
            return
        ours = next(self.ids).to_bytes(8, "big")
        self.forwarded[ours] = (frames[0], env.msg_id, time.monotonic())
        self.dealer.send_multipart([*frames[1:3], ours, *frames[4:]])

    def answered(self, frames: list[bytes]) -> None:
        """The node's answer to a relayed request: back to its client, under its id."""
        if len(frames) != 5:
            return
        client = self.forwarded.pop(frames[2], None)
        if client is not None:
            self.send([client[0], frames[0], frames[1], client[1], *frames[3:]])

    def send(self, frames: list[bytes]) -> None:
        """Send an answer to its client, never blocking: one that cannot go is counted."""
        try:
            self.router.send_multipart(frames, zmq.NOBLOCK)
        except zmq.ZMQError as exc:  # EHOSTUNREACH: gone; EAGAIN: not reading
            self.door.counts["undeliverable"] += 1
            if worth_logging(self.door.counts["undeliverable"]):
                log.warning("cannot deliver an answer to a remote client (%s; %d so far): "
                            "it went away or stopped reading", exc,
                            self.door.counts["undeliverable"])

    def expire(self) -> None:
        """Forget relayed requests whose answer never came (the node answers each; this
        bounds the map if it does not)."""
        if len(self.forwarded) < 1024:
            return
        old = time.monotonic() - FORWARDED_KEPT_S
        for key in [k for k, v in self.forwarded.items() if v[2] < old]:
            del self.forwarded[key]


def _error(exc: BeamishError) -> WireMap:
    return {"ok": False, "error": ErrorReply.of(exc).to_wire()}


def message_answer(messenger: Messenger, req: WireMap) -> WireMap:
    """Run a remote client's ``call``, ``cast`` or ``cast_many`` with ``messenger`` and
    return its answer's wire form (as the control socket's: ``{"ok", "value"}`` or
    ``{"ok": False, "error"}``). ``{"op": "call", "name", "msg", "timeout"}`` -> the
    reply; ``{"op": "cast", "name", "msg"}`` -> None once durable; ``{"op": "cast_many",
    "items": [[name, msg], ...]}`` -> None once all are durable (one commit)."""
    op = req.get("op")
    try:
        if op == "cast_many":
            items = req.get("items")
            if not isinstance(items, list) or not all(
                    isinstance(i, list) and len(i) == 2 for i in items):
                raise ConfigError("cast_many: items must be a list of [name, msg] pairs")
            messenger.cast_many([(n, m) for n, m in items])
            return {"ok": True, "value": None}
        name = check_lookup_name(req.get("name"))
        if op == "cast":
            messenger.cast(name, req.get("msg"))
            return {"ok": True, "value": None}
        timeout = check_timeout(req.get("timeout", 5.0))
        return {"ok": True, "value": messenger.call(name, req.get("msg"), timeout)}
    except BeamishError as exc:
        return _error(exc)
    except Exception as exc:  # noqa: BLE001 - a bug must not kill the relay; it is logged
        log.exception("remote %r failed", op)
        return _error(BeamishInternalError(
            f"remote {op!r} failed inside the node ({type(exc).__name__}: {exc}); this is "
            "a bug, please report it with the node log"))

