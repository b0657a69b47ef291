"""Thespian's actors for the peers scenario (`._peers_child`): a module of their own, so
that Thespian's actor processes import them by name. Only the thespian child imports it.

`Counter` behaves as beamish's `agents.Counter` and `agents.Echo` together: the message
``"incr"`` counts (no reply: a cast), ``"count"`` answers the count, ``"pid"`` the actor's
process id, and anything else is answered with itself (the echo of the call row).
`Keeper` is the parent the SIGKILL row needs: Thespian does not restart an actor whose
process died, its parent gets ``ChildActorExited`` and may create another; the keeper does
that and tells a client the current child's address and generation.
"""

from __future__ import annotations

import os
from typing import Any

from thespian.actors import Actor, ActorSystemMessage, ChildActorExited


class Counter(Actor):  # type: ignore[misc]  # thespian is untyped
    """Counts ``"incr"``; answers ``"count"``, ``"pid"``, and echoes anything else."""

    def __init__(self) -> None:
        super().__init__()
        self.n = 0

    def receiveMessage(self, msg: Any, sender: Any) -> None:  # noqa: N802 - Thespian's name
        if msg == "incr":
            self.n += 1
        elif msg == "count":
            self.send(sender, self.n)
        elif msg == "pid":
            self.send(sender, os.getpid())
        elif not isinstance(msg, ActorSystemMessage):  # an exit request, a child's exit
            self.send(sender, msg)


class Keeper(Actor):  # type: ignore[misc]  # thespian is untyped
    """Creates a `Counter` on ``"start"`` and again whenever it exits; ``"child"`` (and
    ``"start"``) answer ``(generation, address)``."""

    def __init__(self) -> None:
        super().__init__()
        self.gen = 0
        self.child: Any = None

    def receiveMessage(self, msg: Any, sender: Any) -> None:  # noqa: N802 - Thespian's name
        if msg == "start" and self.child is None:
            self.gen, self.child = 1, self.createActor(Counter)
            self.send(sender, (self.gen, self.child))
        elif msg in ("start", "child"):
            self.send(sender, (self.gen, self.child))
        elif isinstance(msg, ChildActorExited) and msg.childAddress == self.child:
            self.gen += 1
            self.child = self.createActor(Counter)
