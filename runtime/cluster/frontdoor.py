"""The node's TCP front door: one ROUTER, a CURVE server, for remote clients.

    remote client ══CURVE/TCP══▶ ROUTER ─▶ relay thread ─┬─▶ DEALER ─▶ node control (ipc)
                                   ▲                    └─▶ pool: call/cast (Messenger)
              ZAP thread ──admits──┘ (DIR/authorized/ only)

A handshake is checked by the ZAP thread against the keys in ``DIR/authorized/`` (re-read
when the dir or a key file in it changes); a peer that fails it (unknown key, no CURVE,
garbage bytes) never gets a frame to the relay: libzmq drops the connection, the socket monitor counts it as a
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
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from enum import Enum
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
CLOSE_LINGER_MS = 1000  # how long the last answers may take to leave as the door closes
PUSH_TIMEOUT_MS = 1000  # a pool thread's answer the relay does not take by then is dropped
REQUEST_ROOM = 4096  # a request's own fields, around a message of max_message_bytes
HWM = 1000  # messages queued per peer, each way
FORWARDED_KEPT_S = 3600.0  # a relayed request unanswered this long is forgotten
ZAP_ENDPOINT = "inproc://zeromq.zap.01"
MESSAGE_OPS = frozenset({"call", "cast", "cast_many"})


class Refusal(Enum):
    """Why the front door refused a connection (the value: how the log says it)."""

    AUTH = "its key is not authorized"
    PROTOCOL = "not ZMTP with CURVE"
    OTHER = "the handshake failed"
    CLOSED = "closed before its handshake: garbage?"


_REFUSALS: dict[int, Refusal] = {
    zmq.EVENT_HANDSHAKE_FAILED_AUTH: Refusal.AUTH,
    zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL: Refusal.PROTOCOL,
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL: Refusal.OTHER,
}


@dataclass(frozen=True, slots=True)
class FrontDoorCounts:
    """The front door's counters (see `TransportStatus` for each). Written by the relay
    thread only, each change a new record: a reader always sees one consistent set."""

    connections: int = 0
    refused: int = 0
    refused_auth: int = 0
    refused_protocol: int = 0
    requests: int = 0
    dropped: int = 0
    undeliverable: int = 0

    def refusal(self, why: Refusal) -> FrontDoorCounts:
        """These counts with one more refusal, for ``why``."""
        return replace(self, refused=self.refused + 1,
                       refused_auth=self.refused_auth + (why is Refusal.AUTH),
                       refused_protocol=self.refused_protocol + (why is Refusal.PROTOCOL))


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


RACY_NS = 2_000_000_000  # a key file this close to the last read may have changed unseen


@dataclass(frozen=True, slots=True)
class KeyFileStamp:
    """What a file of ``authorized/`` looks like from outside (its content unread).

    Attributes:
        name: its file name.
        inode: its inode (a file replaced by a rename gets a new one).
        size: its size in bytes.
        mtime_ns: its modification time.
        ctime_ns: its status change time (moves on every write, even one that sets the
            modification time back, as ``cp -p`` does).
    """

    name: str
    inode: int
    size: int
    mtime_ns: int
    ctime_ns: int


@dataclass(frozen=True, slots=True)
class KeysStamp:
    """The state of ``authorized/`` the admitted keys were read from.

    Attributes:
        dir_mtime_ns: the dir's modification time (0: no dir).
        files: each ``*.key`` file there, by name.
    """

    dir_mtime_ns: int
    files: tuple[KeyFileStamp, ...]

    def newest_ns(self) -> int:
        """The latest time anything here changed."""
        return max([self.dir_mtime_ns, *(max(f.mtime_ns, f.ctime_ns) for f in self.files)])


def keys_changed(last: KeysStamp | None, now: KeysStamp, last_read_ns: int) -> bool:
    """Whether the authorized keys must be read again (pure): never read, the dir or any
    key file changed (name, inode, size or times), or something there changed so close to
    the last read (``last_read_ns``, wall clock) that a rewrite in the same tick of the
    file system's clock would leave every stamp as it was."""
    if last is None or now != last:
        return True
    return now.newest_ns() >= last_read_ns - RACY_NS


def keys_stamp(folder: str) -> KeysStamp:
    """Stat ``folder`` and its ``*.key`` files (a file gone meanwhile is left out; it
    changes the dir's time)."""
    try:
        dir_mtime = os.stat(folder).st_mtime_ns
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return KeysStamp(0, ())
    files = []
    for entry in sorted(entries, key=lambda e: e.name):
        if not entry.name.endswith(".key"):
            continue
        try:
            st = entry.stat()
        except FileNotFoundError:
            continue
        files.append(KeyFileStamp(entry.name, st.st_ino, st.st_size, st.st_mtime_ns,
                                  st.st_ctime_ns))
    return KeysStamp(dir_mtime, tuple(files))


class _Allowed:
    """The keys of ``DIR/authorized/``, re-read when the dir or any key file in it changes
    (ZAP thread only): a key removed, replaced or rewritten in place is refused from its
    next handshake on."""

    def __init__(self, dir: str, clock: Callable[[], int] = time.time_ns) -> None:
        self.dir = os.path.join(dir, "authorized")
        self.keys_dir = dir
        self.clock = clock
        self.stamp: KeysStamp | None = None
        self.read_ns = 0
        self.keys: frozenset[str] = frozenset()
        self.refresh()

    def refresh(self) -> None:
        """Read the keys again if `keys_changed` says so (a bad file keeps the last good
        set, logged)."""
        stamp = keys_stamp(self.dir)
        if not keys_changed(self.stamp, stamp, self.read_ns):
            return
        read_ns = self.clock()  # before reading: a write after it shows as racy
        try:
            keys = frozenset(k.key for k in authorized_keys(self.keys_dir))
        except ConfigError as exc:  # keep the last good set; say why
            log.error("cannot reload the authorized keys: %s", exc)
            return
        first, self.stamp, self.read_ns = self.stamp is None, stamp, read_ns
        if first or keys != self.keys:
            log.info("admitting %d authorized key(s) from %s", len(keys), self.dir)
        self.keys = keys


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
        self.closing = threading.Event()  # set first: the relay takes no new request
        self.stopping = threading.Event()  # then: the relay ends
        self.zap_stop = threading.Event()  # set once the ROUTER is closed
        self.counts = FrontDoorCounts()
        self.pool = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="beamish-tcp")
        # Calls/casts accepted and not finished (queued or running on the pool), under
        # _lock: the relay's backpressure and what closing waits for. A slot is given
        # back when its call ends, however it ends.
        self.inflight = 0
        self._done = threading.Condition(threading.Lock())
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
        if self.listen.startswith("tcp://["):
            router.setsockopt(zmq.IPV6, 1)  # libzmq refuses an IPv6 address without it
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
                               c.connections, c.refused, c.refused_auth, c.refused_protocol,
                               c.requests, c.dropped, c.undeliverable, self.limit)

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
        if not ok and worth_logging(self.counts.refused_auth + 1):
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
                if reading != (self.inflight < MAX_INFLIGHT
                               and not self.closing.is_set()):  # backpressure, closing
                    reading = not reading
                    poller.modify(router, zmq.POLLIN if reading else 0)
                ready = dict(poller.poll(100))
                if monitor in ready:
                    self._on_monitor(monitor, pending)
                if results in ready:
                    while results.poll(0):
                        relay.send(results.recv_multipart())
                if dealer in ready:
                    while dealer.poll(0):
                        relay.answered(dealer.recv_multipart())
                if router in ready:
                    for _ in range(1000):
                        if self.inflight >= MAX_INFLIGHT or self.closing.is_set() \
                                or not router.poll(0):
                            break
                        relay.received(router.recv_multipart())
                relay.expire()
            while results.poll(0):  # answers pushed while this loop was elsewhere
                relay.send(results.recv_multipart())
        except Exception:  # noqa: BLE001 - the node goes on; its remote clients cannot
            log.exception("the TCP front door failed: remote clients get no answer until "
                          "the node restarts")
        finally:
            router.close(linger=CLOSE_LINGER_MS)  # the last answers still go out
            for sock in (monitor, dealer, results):
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
                why = Refusal.CLOSED
            else:
                if pending:
                    del pending[next(iter(pending))]
                if kind == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                    self.counts = replace(self.counts,
                                          connections=self.counts.connections + 1)
                    continue
                why = _REFUSALS[kind]
            self.counts = self.counts.refusal(why)
            if worth_logging(self.counts.refused):
                log.warning("refused a TCP connection to %s (%s; %d refused so far)",
                            self.listen, why.value, self.counts.refused)

    # -- calls and casts (pool threads) -----------------------------------------------------------
    def submit(self, ident: bytes, env: Envelope) -> None:
        """Run a call/cast of client ``ident`` on the pool (relay thread); its slot is
        taken now and given back when it ends (done, failed or cancelled)."""
        with self._done:
            self.inflight += 1
        try:
            self.pool.submit(self._message, ident, env).add_done_callback(self._finished)
        except RuntimeError:  # the pool is shut down: the door is closing
            self._finished(None)

    def _finished(self, _future: object) -> None:
        with self._done:
            self.inflight -= 1
            self._done.notify_all()

    def _message(self, ident: bytes, env: Envelope) -> None:
        """Run one call/cast and send its answer to the relay (pool thread). A failure
        here is logged and answered with BeamishInternalError when it can be."""
        try:
            answer = message_answer(self.messenger, env.payload)
        except BaseException as exc:  # noqa: BLE001 - logged and answered; the slot freed
            log.exception("a remote %r failed in the front door", env.payload.get("op"))
            answer = _error(BeamishInternalError(
                f"the node failed to carry out this remote request ({type(exc).__name__}: "
                f"{exc}); this is a bug, please report it with the node log"))
        try:
            self._push(ident, env.msg_id, answer)
        except BaseException:  # noqa: BLE001 - a pool thread must not lose it silently
            log.exception("cannot hand a remote answer to the relay: its client gets none")

    def _push(self, ident: bytes, msg_id: bytes, answer: WireMap) -> None:
        try:
            frames = encode(Envelope(Kind.REPLY, msg_id, b"", answer))
        except (EncodeError, PayloadTooLarge) as exc:
            frames = encode(Envelope(Kind.REPLY, msg_id, b"", _error(BeamishInternalError(
                f"the answer cannot be sent back: {exc}"))))
        sock: zmq.Socket[Any] | None = getattr(self._local, "sock", None)
        if sock is None:
            sock = self._local.sock = self.ctx.socket(zmq.PUSH)
            sock.setsockopt(zmq.LINGER, 0)
            # The relay takes answers at once while it runs; once it has ended (closed,
            # failed) nothing would take this one: give up instead of waiting for ever.
            sock.setsockopt(zmq.SNDTIMEO, PUSH_TIMEOUT_MS)
            sock.connect("inproc://frontdoor-results")
            with self._lock:
                self._pushers.append(sock)
        try:
            sock.send_multipart([ident, *frames])
        except zmq.Again:
            log.warning("the front door's relay took no answer within %d ms (closed or "
                        "failed): a remote client gets none", PUSH_TIMEOUT_MS)

    def quiesce(self) -> int:
        """Stop taking calls and casts and let those running finish (up to
        `CLOSE_WAIT_S`); answers to them and to relayed requests still go out. Return how
        many still run."""
        self.closing.set()
        deadline = time.monotonic() + CLOSE_WAIT_S
        with self._done:
            if self.inflight:
                log.info("closing: waiting up to %g s for %d remote call(s) in flight",
                         CLOSE_WAIT_S, self.inflight)
            while self.inflight and (left := deadline - time.monotonic()) > 0:
                self._done.wait(left)
            return self.inflight

    def close(self) -> None:
        """Stop taking requests, let the calls/casts running finish and their answers go
        out (up to `CLOSE_WAIT_S`, `quiesce`), then stop relaying and authenticating and
        close every socket and the context."""
        self.closing.set()
        self.pool.shutdown(wait=False, cancel_futures=True)
        running = self.quiesce()
        # The last answers were pushed before their slots were given back; the relay sends
        # what it has read before it looks at `stopping` again.
        self.stopping.set()
        for thread in self._threads:  # the relay first: it closes the ROUTER, then ZAP ends
            thread.join(5.0)
        self.zap_stop.set()
        if running:
            # Their sockets must not be closed under them; the process is exiting anyway.
            log.warning("%d remote call(s) still waiting as the node stops: their clients "
                        "get no answer", running)
            return
        self.pool.shutdown(wait=True)  # no task left: its threads end at once
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
        self.ids = itertools.count(1)
        self.forwarded: dict[bytes, tuple[bytes, bytes, float]] = {}  # our id -> client's

    def received(self, frames: list[bytes]) -> None:
        """A request from an admitted client: relay it, or run it on the pool (counted;
        one that is not a valid request is dropped, counted too)."""
        door = self.door
        door.counts = replace(door.counts, requests=door.counts.requests + 1)
        if not self._take(frames):
            door.counts = replace(door.counts, dropped=door.counts.dropped + 1)

    def _take(self, frames: list[bytes]) -> bool:
        if len(frames) != 6:
            return False
        try:
            env = decode(frames[1:], limit=self.door.limit + REQUEST_ROOM)
        except PayloadTooLarge as exc:
            self.send([frames[0], *encode(Envelope(Kind.REPLY, frames[3], b"", _error(
                MessageTooLarge(exc.size, exc.limit, what="this request to the node"))))])
            return False
        except ProtocolError:
            return False
        if env.kind is not Kind.CALL or not isinstance(env.payload, dict) \
                or not isinstance(env.payload.get("op"), str):
            return False
        if env.payload["op"] in MESSAGE_OPS:
            self.door.submit(frames[0], env)
            return True
        ours = next(self.ids).to_bytes(8, "big")
        self.forwarded[ours] = (frames[0], env.msg_id, time.monotonic())
        self.dealer.send_multipart([*frames[1:3], ours, *frames[4:]])
        return True

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
            counts = self.door.counts = replace(
                self.door.counts, undeliverable=self.door.counts.undeliverable + 1)
            if worth_logging(counts.undeliverable):
                log.warning("cannot deliver an answer to a remote client (%s; %d so far): "
                            "it went away or stopped reading", exc,
                            counts.undeliverable)

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

