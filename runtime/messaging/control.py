"""The client side of the node's control socket: spawn, stop, info, tree, events, ...

Requests are ``{"op": name, **args}`` CALL envelopes; the node answers
``{"ok": True, "value": ...}`` or ``{"ok": False, "error": {"type", "message", "attrs"}}``.
The ops themselves are documented where the node registers them (`._node.COMMANDS`).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import Any

import zmq

from beamish.mailbox import Requester, RequestTimeout

from .._paths import NodePaths
from .._validation import check_timeout
from ..errors import NodeNotRunning, error_from_wire
from .codec import CODEC_ERRORS, send_error


class ControlClient:
    """Sends control requests to a node; safe from many threads (one socket per thread).

    Args:
        paths: the node's paths.
        ctx: the ZeroMQ context to use.
        alive: whether the node's process still lives; a request ends as soon as it does
            not (`NodeNotRunning`), not at its timeout.
    """

    def __init__(self, paths: NodePaths, ctx: zmq.Context[Any],
                 alive: Callable[[], bool] | None = None) -> None:
        self.paths = paths
        self.ctx = ctx
        self.alive = alive
        self._local = threading.local()
        self._all: weakref.WeakSet[Requester] = weakref.WeakSet()
        self._lock = threading.Lock()

    def _requester(self) -> Requester:
        req: Requester | None = getattr(self._local, "req", None)
        if req is None:
            req = Requester(self.ctx, self.paths.control)
            self._local.req = req
            with self._lock:
                self._all.add(req)
        return req

    def request(self, op: str, args: dict[str, Any] | None = None, *,
                timeout: float = 30.0) -> Any:
        """Run control op ``op`` with ``args`` on the node and return its value.

        Raises:
            ConfigError: ``timeout`` is not a finite number > 0.
            BadMessage, MessageTooLarge: the request cannot be sent.
            NodeNotRunning: the node did not answer within ``timeout``.
            BeamishError: the error the node reported, rebuilt with its type.
        """
        timeout = check_timeout(timeout)
        req = self._requester()
        try:
            answer = req.request({**(args or {}), "op": op}, timeout, self.alive)
        except CODEC_ERRORS as exc:
            raise send_error(exc, what=f"the {op!r} request", prefix=f"the {op!r} request: ") \
                from None
        except RequestTimeout:
            # The socket may now hold a late reply; a fresh one keeps requests matched.
            req.close()
            self._local.req = None
            if self.alive is not None and not self.alive():
                raise NodeNotRunning(
                    f"the node on {self.paths.dir!r} went away while answering {op!r} (it "
                    f"was killed or crashed; see {self.paths.log}); start it again with "
                    f"`beamish node start --dir {self.paths.dir}`") from None
            raise NodeNotRunning(
                f"the node on {self.paths.dir!r} did not answer {op!r} within {timeout:g} s "
                "(is it running? `beamish node status`)") from None
        if answer.get("ok"):
            return answer.get("value")
        raise error_from_wire(answer.get("error", {}))

    def dropped_frames(self) -> int:
        """How many invalid replies this client's sockets dropped."""
        with self._lock:
            return sum(req.dropped for req in self._all)

    def close(self) -> None:
        """Close every thread's socket."""
        with self._lock:
            for req in list(self._all):
                req.close()
