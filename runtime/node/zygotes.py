"""The node's zygotes: the current one, which forks every new agent, and older ones kept
after a code upgrade while agents still run (or are pinned to) their code.

An upgrade (``node/upgrade.py``) starts a fresh zygote, which imports the current code,
and makes it current; the agents still running the old code are *pinned* to the zygote
that forked them, so that a crash restart (or a wake) of one the rollout has not moved
yet, or left behind, stays on its code. A pin holds for the agent's spawn (its start
order): a new spawn of the name uses the current zygote. An old zygote is retired
(`retire_idle`, from the node's main loop) once no pin names it and none of its agents
runs.

Zygotes are started from the node's main thread (PDEATHSIG follows the thread that
started them): another thread asks with `start_new`, which the main loop serves
(`serve`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass

from .._types import WireMap
from .zygote_link import ZygoteLink, ZygoteLost

log = logging.getLogger("beamish.node")


@dataclass(frozen=True, slots=True)
class Pin:
    """Agent forks stay on ``link`` while the agent's start order is ``order``."""

    link: ZygoteLink
    order: int


class Zygotes:
    """The node's zygote links, and which one forks each agent.

    Args:
        first: the zygote started with the node.
        make: starts a new zygote (called on the node's main thread).
        order_of: the start order of agent ``name`` (None: it has no record).
    """

    def __init__(self, first: ZygoteLink, make: Callable[[], ZygoteLink],
                 order_of: Callable[[str], int | None]) -> None:
        self.current = first
        self.old: list[ZygoteLink] = []
        self._make = make
        self._order_of = order_of
        self._pins: dict[str, Pin] = {}
        self._lock = threading.Lock()
        self._wanted: list[Future[ZygoteLink]] = []
        self.upgrading = False  # set by an upgrade while it runs: nothing is retired

    # -- forks ----------------------------------------------------------------------------
    def fork(self, boot: WireMap, preload: list[str]) -> int:
        """Fork the agent of ``boot`` from the zygote it is pinned to, else the current one."""
        return self.link_for(str(boot.get("name", ""))).fork(boot, preload)

    def link_for(self, name: str) -> ZygoteLink:
        """The zygote that forks agent ``name`` now: its pin's, if the pin is for its
        current spawn and that zygote still runs; else the current one."""
        with self._lock:
            pin = self._pins.get(name)
            current = self.current
        if pin is None:
            return current
        if pin.link is current:
            return current
        if not pin.link.alive() or self._order_of(name) != pin.order:
            self.unpin(name, pin.link)  # a new spawn of the name, or its zygote died
            return current
        return pin.link

    def pin(self, name: str, link: ZygoteLink, order: int) -> None:
        """Fork agent ``name`` (of start order ``order``) from ``link`` from now on."""
        with self._lock:
            self._pins[name] = Pin(link, order)

    def unpin(self, name: str, link: ZygoteLink | None = None) -> None:
        """Let agent ``name`` fork from the current zygote again (only if it is pinned to
        ``link``, when given)."""
        with self._lock:
            pin = self._pins.get(name)
            if pin is not None and (link is None or pin.link is link):
                del self._pins[name]

    def forked_by(self, pid: int) -> ZygoteLink | None:
        """The zygote that forked live agent process ``pid`` (None: none of ours)."""
        with self._lock:
            links = [self.current, *self.old]
        return next((link for link in links if pid in link.gen.agents), None)

    # -- new zygotes ----------------------------------------------------------------------
    def start_new(self, timeout: float = 60.0) -> ZygoteLink:
        """Start a fresh zygote (from the main loop: this waits for it); `promote` makes
        it the current one, `discard` stops it. One that comes too late is never started,
        or stopped as soon as it is.

        Raises:
            ZygoteLost: it did not start (why), or not within ``timeout`` seconds.
        """
        fut: Future[ZygoteLink] = Future()
        with self._lock:
            self._wanted.append(fut)
        try:
            return fut.result(timeout)
        except FutureTimeout:
            if not fut.cancel():  # the main loop is starting it: stop it once it runs
                fut.add_done_callback(self._discard_unwanted)
            raise ZygoteLost(f"no new zygote started within {timeout:g} s (the node is "
                             "busy or stopping); nothing was upgraded: try again") from None

    def _discard_unwanted(self, fut: Future[ZygoteLink]) -> None:
        if not fut.cancelled() and fut.exception() is None:
            self.discard(fut.result())

    def serve(self) -> None:
        """Start the zygotes asked for (the node's main thread, each loop)."""
        if not self._wanted:
            return
        with self._lock:
            wanted, self._wanted = self._wanted, []
        for fut in wanted:
            if not fut.set_running_or_notify_cancel():
                continue  # its upgrade gave up waiting
            try:
                link = self._make()
            except Exception as exc:  # noqa: BLE001 - handed to the upgrade that asked
                fut.set_exception(exc if isinstance(exc, ZygoteLost) else ZygoteLost(
                    f"the new zygote did not start ({type(exc).__name__}: {exc}); "
                    "nothing was upgraded"))
                continue
            log.info("started a new zygote (pid %d) for a code upgrade", link.gen.proc.pid)
            fut.set_result(link)

    def promote(self, link: ZygoteLink) -> None:
        """Make ``link`` (from `start_new`) the current zygote; the one before is kept
        until `retire_idle` finds it unused."""
        with self._lock:
            self.old.append(self.current)
            self.current = link

    @staticmethod
    def discard(link: ZygoteLink) -> None:
        """Stop ``link`` (from `start_new`, never promoted: it forked nothing)."""
        log.info("stopping the new zygote (pid %d): the upgrade did not go ahead",
                 link.gen.proc.pid)
        link.close()

    def retire_idle(self) -> None:
        """Close the old zygotes no pin names and no agent of which runs (main thread)."""
        if not self.old or self.upgrading:
            return  # a rollout may still bring an agent back on an old one
        with self._lock:
            # A dead one is closed whatever pins it (they fall back to the current one).
            pinned = {id(p.link) for p in self._pins.values()}
            idle = [z for z in self.old if not z.alive()
                    or (id(z) not in pinned and not z.gen.agents)]
            self.old = [z for z in self.old if z not in idle]
            self._pins = {n: p for n, p in self._pins.items() if p.link not in idle}
        for link in idle:
            log.info("retiring the old zygote (pid %d): no agent runs its code any more",
                     link.gen.proc.pid)
            link.close()

    # -- the node's view --------------------------------------------------------------------
    def all(self) -> Iterable[ZygoteLink]:
        """Every zygote link, the current one first."""
        with self._lock:
            return [self.current, *self.old]

    @property
    def dropped(self) -> int:
        """Frames and datagrams dropped by every zygote link."""
        return sum(z.dropped for z in self.all())

    def close(self) -> None:
        """Stop every zygote (their remaining children die with them)."""
        for link in self.all():
            link.close()
        with self._lock:
            for fut in self._wanted:
                fut.cancel()
            self._wanted = []
