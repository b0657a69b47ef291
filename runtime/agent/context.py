"""`AgentContext`: what a handler reaches through ``self.ctx``."""

from __future__ import annotations

import heapq
import itertools
import time
from dataclasses import replace
from typing import Any

from .._types import UserData
from .._validation import check_name, check_timeout
from ..messaging.control import ControlClient
from ..messaging.messenger import Messenger
from ..messaging.spawnargs import spawn_request


class AgentContext:
    """The running agent's view of its node. Available in handlers, ``init`` and ``recover``.

    Attributes:
        name: this agent's name.
    """

    def __init__(self, name: str, messenger: Messenger, control: ControlClient,
                 incarnation: int = 0, trap_exits: bool = False) -> None:
        self.name = name
        self._incarnation = incarnation
        self._trap_exits = trap_exits
        self._messenger = messenger
        self._control = control
        # "init" or "recover" while the agent's start runs (its supervisor waits for it
        # then), None once it is ready: the node refuses a spawn that would deadlock.
        self._phase: str | None = None
        self._timers: list[tuple[float, int, Any]] = []
        self._seq = itertools.count()

    def call(self, name: str, msg: Any, timeout: float = 5.0) -> Any:
        """Call agent ``name`` and wait for its reply (see `AgentRef.call`)."""
        return self._messenger.call(name, msg, timeout)

    def cast(self, name: str, msg: Any) -> None:
        """Cast ``msg`` to agent ``name``; returns once it is durably in its mailbox."""
        self._messenger.cast(name, msg)

    def spawn(self, cls: type | str, args: UserData | None = None, name: str | None = None,
              **options: Any) -> str:
        """Spawn another agent (same arguments as `Node.spawn`); return its name.

        From ``init`` or ``recover``, a spawn into this agent's own supervisor (or into an
        ancestor that is starting this agent's branch) is refused at once with
        `SpawnError`: that supervisor waits for this start to finish, so the spawn could
        never be served. Spawn such a child once started (e.g. ``self.ctx.send_after(0,
        "spawn")`` in ``init``, then spawn in ``handle_info``) or into another supervisor.
        """
        request = replace(spawn_request(cls, args, name, **options, max_bytes=self._messenger.limit),
                          caller=self.name, caller_phase=self._phase)
        value = self._control.request("spawn", request, timeout=request.timeout + 5)
        return str(value["name"])

    def monitor(self, name: str) -> None:
        """Get ``Down(name, reason)`` in ``handle_info`` when agent ``name``'s process exits
        (reason "noproc" at once if it is not running). Like Erlang, a monitor belongs to
        this process: a restart of this agent drops it (monitor again in ``init`` or
        ``recover``)."""
        check_name(name)
        self._control.request("monitor", {"watcher": self.name, "inc": self._incarnation,
                                          "target": name})

    def link(self, name: str) -> None:
        """Link this agent's process and agent ``name``'s both ways: an abnormal exit of one
        kills the other, unless it sets ``trap_exits = True`` and then receives
        ``Exit(name, reason)`` in ``handle_info``. Normal exits do not propagate.

        Raises:
            AgentNotFound: ``name`` is not running.
        """
        check_name(name)
        self._control.request("link", {"watcher": self.name, "inc": self._incarnation,
                                       "target": name, "trap_exits": self._trap_exits})

    def send_after(self, seconds: float, msg: Any) -> None:
        """Deliver ``msg`` to this agent's ``handle_info`` after ``seconds``.

        Timers live in the agent's process: a crash or restart cancels them.

        Raises:
            ConfigError: ``seconds`` is not a finite number >= 0.
        """
        seconds = check_timeout(seconds, "seconds", allow_zero=True)  # NaN breaks the heap
        heapq.heappush(self._timers, (time.monotonic() + seconds, next(self._seq), msg))

    def _next_timer_in(self) -> float | None:
        if not self._timers:
            return None
        return max(0.0, self._timers[0][0] - time.monotonic())

    def _pop_due(self) -> list[Any]:
        due = []
        now = time.monotonic()
        while self._timers and self._timers[0][0] <= now:
            due.append(heapq.heappop(self._timers)[2])
        return due
