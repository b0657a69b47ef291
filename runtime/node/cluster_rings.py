"""Rings to the owners of replicated agents on other nodes, sent by one thread and
coalesced (`RingSender`): a cast's acknowledgement no longer waits for its ring, and the
rings that pile up while one batch is out go together in the next (one statement and
one commit, a notification per distinct name).

A ring is a hint: a batch that cannot be sent is logged and dropped, and the owner finds
the mail at its next re-check (``cluster_node.RECHECK_S``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

from ..errors import StoreError

log = logging.getLogger("beamish.cluster")


class RingSender:
    """A thread that sends the rings queued by `ring`, all those pending at once.

    Args:
        send: sends one batch of agent names (`PgRinger.ring_many`); raises
            `StoreError` when it cannot.
    """

    def __init__(self, send: Callable[[Sequence[str]], None]) -> None:
        self._send = send
        self._cond = threading.Condition()
        self._pending: dict[str, None] = {}  # names in the order first rung
        self._closed = False
        self.batches = 0  # batches sent (or tried)
        self._thread = threading.Thread(target=self._run, name="beamish-cluster-rings",
                                        daemon=True)

    def start(self) -> None:
        """Start the sending thread."""
        self._thread.start()

    def ring(self, name: str) -> None:
        """Queue a ring for agent ``name`` (returns at once)."""
        with self._cond:
            if name not in self._pending:
                self._pending[name] = None
                self._cond.notify()

    def close(self, timeout: float = 5.0) -> None:
        """Send what is pending, then stop the thread (waits up to ``timeout``)."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closed:
                    self._cond.wait()
                if not self._pending:
                    return
                names = list(self._pending)
                self._pending.clear()
            self.batches += 1
            try:
                self._send(names)
            except StoreError as exc:  # the messages are stored: the re-checks find them
                log.warning("%d ring(s) not sent (%s); their owners find the mail at their "
                            "next re-check", len(names), exc)
