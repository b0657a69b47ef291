"""node/zygotes.py with real zygote processes: a new zygote an upgrade asked for but gave
up waiting for (`Zygotes.start_new` timed out) is never left running."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable

from beamish.runtime.node.zygote_link import ZygoteLink, ZygoteLost
from beamish.runtime.node.zygotes import Zygotes
from tests.conftest import wait_until


def _link() -> ZygoteLink:
    return ZygoteLink(list(sys.path), lambda pid, rc: None, lambda report: None)


def _ask(zygotes: Zygotes, timeout: float, then: Callable[[BaseException], None]
         ) -> threading.Thread:
    """An upgrade's thread asking for a new zygote; ``then`` gets what start_new raised."""
    def run() -> None:
        try:
            zygotes.start_new(timeout)
        except BaseException as exc:  # noqa: BLE001 - the test looks at it
            then(exc)
    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_a_zygote_asked_for_and_given_up_on_is_never_started():
    made: list[ZygoteLink] = []
    first = _link()
    zygotes = Zygotes(first, lambda: made.append(_link()) or made[-1], lambda name: None)
    raised: list[BaseException] = []
    try:
        _ask(zygotes, 0.01, raised.append).join(30)  # the main loop did not serve in time
        zygotes.serve()  # ... and gets to it now
        assert made == []
        assert len(raised) == 1 and isinstance(raised[0], ZygoteLost)
    finally:
        for link in (first, *made):
            link.close()


def test_a_zygote_started_after_its_upgrade_gave_up_is_stopped():
    made: list[ZygoteLink] = []
    gave_up = threading.Event()

    def make() -> ZygoteLink:
        gave_up.wait(60)  # a slow start: the upgrade stops waiting meanwhile
        made.append(_link())
        return made[-1]

    first = _link()
    zygotes = Zygotes(first, make, lambda name: None)
    raised: list[BaseException] = []
    try:
        thread = _ask(zygotes, 1.0, lambda exc: (raised.append(exc), gave_up.set()))
        wait_until(lambda: zygotes._wanted, what="the upgrade to ask for a zygote")
        zygotes.serve()  # the main loop starts it; the upgrade gives up while it does
        thread.join(30)
        assert len(made) == 1 and not made[0].alive()  # stopped, not left running
        assert len(raised) == 1 and isinstance(raised[0], ZygoteLost)
        assert zygotes.current is first and zygotes.old == []
    finally:
        gave_up.set()
        for link in (first, *made):
            link.close()
