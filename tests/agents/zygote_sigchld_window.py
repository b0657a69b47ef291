"""A module whose import ignores SIGCHLD and then waits: imported into the zygote, an
agent that dies meanwhile is reaped by the kernel and leaves no exit status.

Its first import (the zygote's trial import in a throwaway child) only leaves a marker;
the second (in the zygote) writes ``importing`` in ``$ZYGOTE_TEST_MARKERS`` and waits for
the test to write ``go`` there. Importing it is the fault, so it is a module of its own.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

from beamish.runtime import Agent

_DIR = os.environ.get("ZYGOTE_TEST_MARKERS", "")
if _DIR:
    if os.path.exists(os.path.join(_DIR, "tried")):
        signal.signal(signal.SIGCHLD, signal.SIG_IGN)
        open(os.path.join(_DIR, "importing"), "w").close()
        deadline = time.monotonic() + 60
        while not os.path.exists(os.path.join(_DIR, "go")) and time.monotonic() < deadline:
            time.sleep(0.01)
    else:
        open(os.path.join(_DIR, "tried"), "w").close()


class Idle(Agent):
    """Answers ``"ok"``."""

    def handle_call(self, msg: Any, state: Any) -> tuple[Any, Any]:
        return "ok", state
