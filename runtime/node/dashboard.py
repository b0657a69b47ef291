"""The live web view (``[node] dashboard = "127.0.0.1:8470"``, ``beamish dashboard``): one
page showing the supervision tree, each agent (state, mailbox, failures, dead letters with
resend, log tail) and the event stream, refreshed by polling a small JSON API.

The server (`DashboardServer`, the stdlib's ``ThreadingHTTPServer``, a thread per request,
off the node's main loop) reads everything through a `DashboardSource`: the node's
control commands by name, answered in their wire form, plus an agent's log tail. The node
daemon serves it with `CommandSource` (the commands run in the daemon's process, as its
command threads run them); ``beamish dashboard`` with one that asks a running node
through the client API (``client/dashboard.py``). So both serve the same page and data.

Access (`authorize`, pure): every API request needs the dashboard's token in an
``Authorization: Bearer`` header (a request without it gets 401 and an empty body), on
loopback too: the node dir is its owner's alone (0700), and so is the dashboard. The
token is given (``[node] dashboard_token``, ``--token``) or made at start, and printed by
``beamish dashboard`` or written in ``node.log`` (0600) by the node. No cookie: a browser
would send it to every port of the host. The page itself (`SHELL_PATHS`) is a static
shell with no data: its script takes the token from the address's fragment
(``#token=``, never sent to a server), keeps it in the tab's ``sessionStorage`` and
sends it with each request. On loopback, requests must also name a loopback host
(``Host:``), so a page of another site cannot even load the page through DNS rebinding;
the one request that changes something (resend) must carry a header a cross-site form
cannot set.
"""

from __future__ import annotations

import enum
import hmac
import http.server
import io
import ipaddress
import json
import logging
import secrets
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping
from http import HTTPStatus
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

from .._types import WireMap
from ..errors import (
    AgentNotFound,
    AlreadyRunning,
    BeamishError,
    BeamishInternalError,
    ConfigError,
    ErrorReply,
    NodeNotRunning,
)
from .config import ListenAddress
from .dashboard_page import PAGE

log = logging.getLogger("beamish.node")

RESEND_HEADER = "X-Beamish-Dashboard"
"""The header a resend request must carry (``1``): a cross-site form cannot set it."""
TOKEN_BYTES = 24
"""A generated token's entropy in bytes (it is printed as URL-safe base64)."""
EVENTS_TAIL = 200
"""How many of the latest events the page shows when it opens."""
AGENT_EVENTS = 20
"""How many of an agent's latest events its page shows."""
AGENT_EVENTS_WINDOW = 5000
"""An agent's page looks for its events among this many latest events of the node."""
LOG_LINES = 100
"""How many lines of an agent's log its page shows."""
TREE_LIMIT = 200
"""How many agents of each supervisor the tree lists (the others are counted)."""
REQUEST_TIMEOUT_S = 10.0
"""A client that sends nothing for this long is disconnected."""
REQUEST_DEADLINE_S = 30.0
"""A whole request (reading it, answering it) must be done within this: a client that
trickles its headers a byte at a time is cut off then, whatever it sends."""
MAX_CONNECTIONS = 32
"""At most this many connections are served at once (a thread each); more get 503."""
CLOSE_GRACE_S = 2.0
"""`DashboardServer.close` lets the requests in progress finish for this long, then cuts
their connections."""
CLOSE_WAIT_S = 5.0
"""...and then waits this long for their threads (a command they run) before it goes on."""
_BUSY = (b"HTTP/1.0 503 Service Unavailable\r\nContent-Length: 0\r\nRetry-After: 1\r\n"
         b"Connection: close\r\n\r\n")


class Access(enum.Enum):
    """What `authorize` decides for a request."""

    OPEN = "open"
    """No token is needed: the page's shell, which has no data."""
    GRANTED = "granted"
    """The request carries the token (``Authorization: Bearer``)."""
    DENIED = "denied"
    """The token is needed and missing or wrong: 401, nothing else."""


SHELL_PATHS = frozenset({"/", "/index.html"})
"""The page's shell: HTML and script, no data (it reads everything through the API)."""


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an IP address or ``localhost``) is this machine's loopback (pure).
    ``0.0.0.0`` and ``::`` (every interface) are not."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def new_token() -> str:
    """A fresh random token (URL-safe)."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def _same(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def authorize(expected: str, path: str, bearer: str | None) -> Access:
    """Decide a request's access (pure): `Access.OPEN` when ``path`` is the page's shell
    (`SHELL_PATHS`); `Access.GRANTED` when the ``Authorization: Bearer`` token
    (``bearer``, None if there is none) is ``expected``; else `Access.DENIED`."""
    if path in SHELL_PATHS:
        return Access.OPEN
    return Access.GRANTED if _same(bearer, expected) else Access.DENIED


def host_allowed(host_header: str | None, any_host: bool) -> bool:
    """Whether a request's ``Host:`` header is acceptable (pure): any when ``any_host``
    (the server is bound beyond loopback); otherwise only a loopback host (``localhost``,
    ``127.0.0.1``, ``[::1]``, with or without a port), so that a site that rebinds its
    name to 127.0.0.1 cannot even load the page."""
    if any_host:
        return True
    if not host_header:
        return False
    host = host_header.strip()
    if host.startswith("["):
        host = host[1:host.find("]")] if "]" in host else host
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    return is_loopback(host)


class Look(enum.StrEnum):
    """How the page paints a status (its CSS class)."""

    UP = "up"            # running
    ASLEEP = "asleep"    # sleeping: no process, wakes on its next message
    MOVING = "moving"    # starting, restarting, backoff: about to run again
    DOWN = "down"        # stopped, exited: out of the tree by intent
    FAILED = "failed"    # its supervisor gave up on it
    UNKNOWN = "unknown"  # a status this version does not know


_LOOKS: dict[str, Look] = {
    "running": Look.UP, "sleeping": Look.ASLEEP, "starting": Look.MOVING,
    "restarting": Look.MOVING, "backoff": Look.MOVING, "stopped": Look.DOWN,
    "exited": Look.DOWN, "failed": Look.FAILED,
}


def look_of(status: str) -> Look:
    """How the page shows an agent's or supervisor's ``status`` (pure)."""
    return _LOOKS.get(status, Look.UNKNOWN)


def recent_events(events: list[WireMap], n: int) -> list[WireMap]:
    """The last ``n`` of ``events`` (oldest first), newest first, as the page lists them
    (pure)."""
    return list(reversed(events[-n:])) if n > 0 else []


class DashboardSource(Protocol):
    """Where the dashboard reads: the node's control commands and its agents' logs."""

    def request(self, op: str, args: Mapping[str, object]) -> Any:
        """Run control command ``op`` (node/commands.py) with ``args``; return its value in
        its wire form, or raise its error (a `BeamishError`)."""
        ...

    def log_tail(self, name: str, n: int) -> list[str] | None:
        """The last ``n`` lines of agent ``name``'s log, oldest first ([] if it has none);
        None when logs cannot be read from here (a node reached over TCP: they are files
        on its machine)."""
        ...


class CommandSource:
    """A `DashboardSource` inside the node daemon: runs the commands as its command
    threads do.

    Args:
        answer: runs a command by name, returns its wire answer (``{"ok", "value"}`` or
            ``{"ok": False, "error"}``): the daemon's ``command_answer``.
        log_path: the path of an agent's log by name.
        last_lines: reads the last lines of a log file (``client/logs.py`` ``last_lines``,
            handed down by the command that starts the daemon), or None: no log tail.
    """

    def __init__(self, answer: Callable[[str, dict[str, object]], WireMap],
                 log_path: Callable[[str], str],
                 last_lines: Callable[[str, int], list[str]] | None) -> None:
        self._answer = answer
        self._log_path = log_path
        self._last_lines = last_lines

    def request(self, op: str, args: Mapping[str, object]) -> Any:
        """Run ``op``; its value, or its error raised."""
        answer = self._answer(op, dict(args))
        if not answer.get("ok"):
            raise ErrorReply.from_wire(answer.get("error")).error()
        return answer.get("value")

    def log_tail(self, name: str, n: int) -> list[str] | None:
        """The last ``n`` lines of the agent's log ([] when the daemon has no reader)."""
        if self._last_lines is None:
            return []
        return self._last_lines(self._log_path(name), n)


def _json_default(value: object) -> object:
    """JSON for what msgpack carries and JSON does not: bytes (shown, not decoded)."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
        return f"<{len(raw)} bytes: {raw[:64].hex()}{'...' if len(raw) > 64 else ''}>"
    return repr(value)


def to_json(value: object) -> bytes:
    """``value`` (wire data: the user's state and messages included) as JSON bytes."""
    return json.dumps(value, default=_json_default, ensure_ascii=False).encode()


def _error_status(exc: BeamishError) -> HTTPStatus:
    if isinstance(exc, AgentNotFound):
        return HTTPStatus.NOT_FOUND
    if isinstance(exc, ConfigError):
        return HTTPStatus.BAD_REQUEST
    if isinstance(exc, AlreadyRunning):
        return HTTPStatus.CONFLICT
    if isinstance(exc, NodeNotRunning):
        return HTTPStatus.SERVICE_UNAVAILABLE
    return HTTPStatus.INTERNAL_SERVER_ERROR


class DashboardApi:
    """What each address of the JSON API answers, read from a `DashboardSource`."""

    def __init__(self, source: DashboardSource) -> None:
        self.source = source

    def tree(self) -> WireMap:
        """``/api/tree``: the supervision tree (`TREE_LIMIT` agents per supervisor) and the
        node's status (``ping``)."""
        return {"tree": self.source.request("tree", {"limit": TREE_LIMIT}),
                "node": self.source.request("ping", {}), "time": time.time()}

    def events(self, after: int) -> WireMap:
        """``/api/events?after=SEQ``: a page of events after ``after``; ``after`` < 0: the
        latest `EVENTS_TAIL`."""
        if after < 0:
            latest = int(self.source.request("stats", {})["events"])
            after = max(0, latest - EVENTS_TAIL)
        page: WireMap = self.source.request("events", {"after": after})
        return page

    def agent(self, name: str, near: int) -> WireMap:
        """``/api/agent?name=N&near=SEQ``: one agent's page (``near``: the latest event seq
        the page knows, where its recent events are looked for; ``log`` None: its log
        cannot be read from here)."""
        info = self.source.request("info", {"name": name})
        state = self.source.request("state", {"name": name})
        dead = self.source.request("dead_letters", {"name": name})
        after = max(0, near - AGENT_EVENTS_WINDOW)
        found: list[WireMap] = []
        for _ in range(AGENT_EVENTS_WINDOW // 1000 + 1):
            page = self.source.request("events", {"after": after, "name": name})
            found = (found + page["events"])[-AGENT_EVENTS:]
            if not page["more"]:
                break
            after = int(page["after"])
        return {"info": info, "look": look_of(str(info["status"])).value, "state": state,
                "dead_letters": dead, "events": recent_events(found, AGENT_EVENTS),
                "log": self.source.log_tail(name, LOG_LINES)}

    def resend(self, name: str, seq: int) -> WireMap:
        """``POST /api/resend`` ``{"name", "seq"}``: put the dead letter back in the
        mailbox as a cast (one transaction); its new seq."""
        value: WireMap = self.source.request("resend_dead_letter", {"name": name, "seq": seq})
        return value


class _DeadlineReader(io.RawIOBase):
    """A socket's reads under an overall deadline: each waits at most until ``deadline``
    (`time.monotonic`), so trickling bytes does not keep a request alive."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        super().__init__()
        self._sock = sock
        self._deadline = deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        self._sock.settimeout(_left(self._deadline))
        return self._sock.recv_into(buffer)


def _left(deadline: float) -> float:
    """The time left before ``deadline`` (at most `REQUEST_TIMEOUT_S`, to wait on one
    read or write); TimeoutError when none is."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("the request's deadline passed")
    return min(left, REQUEST_TIMEOUT_S)


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server
    # HTTP/1.0 (the default): a connection per request, so no idle keep-alive connection
    # holds a thread, and `close` can wait for the requests in progress.
    timeout = REQUEST_TIMEOUT_S

    def setup(self) -> None:
        super().setup()
        self.deadline = time.monotonic() + self.server.deadline_s
        self.rfile.close()  # the stdlib's reader: replaced by one under the deadline
        self.rfile = io.BufferedReader(_DeadlineReader(self.connection, self.deadline))

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("dashboard: %s " + format, self.address_string(), *args)

    def _send(self, status: HTTPStatus, body: bytes = b"", ctype: str = "",
              headers: Mapping[str, str] | None = None) -> None:
        self.answered = True
        self.connection.settimeout(_left(self.deadline))  # the answer is under it too
        self.send_response(status)
        if ctype:
            self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("X-Frame-Options", "DENY")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, value: object, status: HTTPStatus = HTTPStatus.OK) -> None:
        self._send(status, to_json(value), "application/json; charset=utf-8")

    def _bearer(self) -> str | None:
        auth = self.headers.get("Authorization", "")
        return auth[7:].strip() if auth[:7].lower() == "bearer " else None

    def _admit(self) -> tuple[bool, dict[str, list[str]], str]:
        """Check the request's access; answer it (401, 403) when it is not to be served.
        Returns (serve it, its query, its path)."""
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        srv = self.server
        if not host_allowed(self.headers.get("Host"), srv.any_host):
            self._send(HTTPStatus.FORBIDDEN)
            return False, query, url.path
        if authorize(srv.token, url.path, self._bearer()) is Access.DENIED:
            self._send(HTTPStatus.UNAUTHORIZED, headers={"WWW-Authenticate": "Bearer"})
            return False, query, url.path
        return True, query, url.path

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        """Serve the page or a JSON read."""
        ok, query, path = self._admit()
        if not ok:
            return
        api = self.server.api
        try:
            if path in SHELL_PATHS:
                self._send(HTTPStatus.OK, self.server.page, "text/html; charset=utf-8",
                           {"Content-Security-Policy": "default-src 'self'; "
                            "script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                            "img-src 'self' data:", "Referrer-Policy": "no-referrer"})
            elif path == "/api/tree":
                self._json(api.tree())
            elif path == "/api/events":
                self._json(api.events(_int_arg(query, "after", 0)))
            elif path == "/api/agent":
                self._json(api.agent(_str_arg(query, "name"), _int_arg(query, "near", 0)))
            else:
                self._send(HTTPStatus.NOT_FOUND)
        except BeamishError as exc:
            self._json({"error": ErrorReply.of(exc).to_wire()}, _error_status(exc))
        except Exception as exc:  # noqa: BLE001 - a bug: logged, answered 500 if still possible
            self._failed(exc)

    def _failed(self, exc: Exception) -> None:
        """A handler's unexpected error: in the node log (the CLI's log for ``beamish
        dashboard``) with its traceback, and a 500 `BeamishInternalError` when no answer
        has started (else the connection is dropped)."""
        if isinstance(exc, (BrokenPipeError, ConnectionResetError, TimeoutError)):
            log.debug("dashboard: %s went away or ran out of time (%s %s)", self.address_string(),
                      self.command, self.path)
            return
        log.exception("dashboard: %s %s failed", self.command, self.path)
        if not getattr(self, "answered", False):
            error = BeamishInternalError(
                f"the dashboard failed on {self.command} {self.path}: "
                f"{type(exc).__name__}: {exc}; this is a bug, please report it with the "
                "node log")
            self._json({"error": ErrorReply.of(error).to_wire()},
                       HTTPStatus.INTERNAL_SERVER_ERROR)

    do_HEAD = do_GET

    def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
        """Resend a dead letter (``/api/resend``)."""
        ok, _, path = self._admit()
        if not ok:
            return
        if path != "/api/resend":
            self._send(HTTPStatus.NOT_FOUND)
            return
        if self.headers.get(RESEND_HEADER) != "1":
            self._send(HTTPStatus.FORBIDDEN)
            return
        try:
            size = int(self.headers.get("Content-Length", "0"))
            if not 0 <= size <= 4096:
                raise ConfigError(f"a resend request of {size} bytes: expected a small JSON "
                                  'object {"name", "seq"}')
            body = json.loads(self.rfile.read(size) or b"{}")
            name, seq = body.get("name"), body.get("seq")
            if not isinstance(name, str) or not isinstance(seq, int) or isinstance(seq, bool):
                raise ConfigError(f'resend {body!r}: expected {{"name": str, "seq": int}}')
            self._json(self.server.api.resend(name, seq))
        except (ValueError, AttributeError) as exc:
            self._json({"error": ErrorReply.of(ConfigError(
                f"a resend request that is not a JSON object: {exc}")).to_wire()},
                HTTPStatus.BAD_REQUEST)
        except BeamishError as exc:
            self._json({"error": ErrorReply.of(exc).to_wire()}, _error_status(exc))
        except Exception as exc:  # noqa: BLE001 - a bug: logged, answered 500 if still possible
            self._failed(exc)


def _str_arg(query: dict[str, list[str]], key: str) -> str:
    values = query.get(key)
    if not values:
        raise ConfigError(f"missing query parameter {key!r}")
    return values[-1]


def _int_arg(query: dict[str, list[str]], key: str, default: int) -> int:
    values = query.get(key)
    if not values:
        return default
    try:
        return int(values[-1])
    except ValueError:
        raise ConfigError(f"{key}={values[-1]!r}: expected a whole number") from None


class _Server(http.server.HTTPServer):
    """A thread per connection, at most ``max_connections`` at once (503 past that); each
    request under ``deadline_s``; `drain` ends the ones left at close."""

    def __init__(self, address: ListenAddress, api: DashboardApi, token: str,
                 page: bytes, max_connections: int, deadline_s: float) -> None:
        self.address_family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
        self.api = api
        self.token = token
        self.any_host = not is_loopback(address.host)
        self.page = page
        self.deadline_s = deadline_s
        self.slots = threading.BoundedSemaphore(max_connections)
        self.live: dict[threading.Thread, socket.socket] = {}
        self.changed = threading.Condition()
        super().__init__((address.host, address.port), _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        """Serve the connection on a thread of its own, or answer 503 when all
        ``max_connections`` are taken."""
        if not self.slots.acquire(blocking=False):
            try:
                request.send(_BUSY, socket.MSG_DONTWAIT)
            except OSError as exc:
                log.debug("dashboard: cannot tell %s it is busy: %s", client_address, exc)
            self.shutdown_request(request)
            return
        thread = threading.Thread(target=self._serve, args=(request, client_address),
                                  name="beamish-dashboard-request", daemon=True)
        with self.changed:
            self.live[thread] = request
        try:
            thread.start()
        except BaseException:
            with self.changed:
                del self.live[thread]
            self.slots.release()
            self.shutdown_request(request)
            raise

    def _serve(self, request: socket.socket, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:  # noqa: BLE001 - handle_error logs it
            self.handle_error(request, client_address)
        finally:
            with self.changed:  # out of `live` first: `drain` touches only open sockets
                del self.live[threading.current_thread()]
                self.changed.notify_all()
            self.shutdown_request(request)
            self.slots.release()

    def drain(self, grace_s: float, wait_s: float) -> None:
        """Let the requests in progress finish for ``grace_s``, then cut the connections
        left (a client that is slow to send or to read) and wait ``wait_s`` for their
        threads; log the ones that are still running."""
        with self.changed:
            if self.changed.wait_for(lambda: not self.live, grace_s):
                return
            for sock in self.live.values():
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError as exc:
                    log.debug("dashboard: cutting a connection at close: %s", exc)
            if not self.changed.wait_for(lambda: not self.live, wait_s):
                log.warning("the dashboard closes with %d request(s) still running after "
                            "%g s (a slow command); not waiting for them",
                            len(self.live), grace_s + wait_s)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """What escapes a request (a client gone mid-answer, a bug): to the log, not as a
        bare traceback on stderr."""
        exc = sys.exc_info()[1]
        if isinstance(exc, (BrokenPipeError, ConnectionResetError, TimeoutError)):
            log.debug("dashboard: %s went away: %s", client_address, exc)
        else:
            log.exception("dashboard: a request from %s failed", client_address)


class DashboardServer:
    """The web view, served on its own threads until `close`.

    Args:
        address: where to listen.
        source: where it reads.
        token: the token API requests must carry; None: one is made (`new_token`).
        what: how the address was given, for the error (``[node] dashboard``, ``--bind``).
        max_connections: how many connections it serves at once (503 past that).
        request_deadline_s: how long a request may take, reading and answering it.

    Raises:
        ConfigError: it cannot listen there (the port is taken, the address is not this
            machine's).
    """

    def __init__(self, address: ListenAddress, source: DashboardSource,
                 token: str | None = None, what: str = "[node] dashboard",
                 max_connections: int = MAX_CONNECTIONS,
                 request_deadline_s: float = REQUEST_DEADLINE_S) -> None:
        self.token = token if token is not None else new_token()
        page = PAGE.replace("__LOOKS__", json.dumps({k: v.value for k, v in _LOOKS.items()}))
        try:
            self._server = _Server(address, DashboardApi(source), self.token, page.encode(),
                                   max_connections, request_deadline_s)
        except OSError as exc:
            raise ConfigError(
                f"{what} = {str(address)!r}: cannot listen there ({exc.strerror or exc}); "
                "choose a free port, or an address of this machine") from None
        host, port = self._server.server_address[:2]
        self.address = ListenAddress(str(host), int(port))
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name="beamish-dashboard", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        """The page's address with ``#token=`` (a fragment: the browser keeps it, it is
        never sent to the server nor in its logs)."""
        host = self.address.host
        if host in ("0.0.0.0", "::"):
            host = socket.gethostname()
        base = f"http://{ListenAddress(host, self.address.port)}/"
        return f"{base}#token={self.token}"

    def close(self) -> None:
        """Stop serving and release the port: requests in progress get `CLOSE_GRACE_S` to
        finish, then their connections are cut."""
        self._server.shutdown()
        self._server.server_close()
        self._server.drain(CLOSE_GRACE_S, CLOSE_WAIT_S)
        self._thread.join(5.0)
