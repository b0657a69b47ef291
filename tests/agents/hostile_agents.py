"""Test agents for issue 9's hostile-input and fault tests (real processes)."""

from __future__ import annotations

import os
import sys
from typing import Any

from beamish.runtime import Agent


class Chatty(Agent):
    """Writes to its standard output (the node's log): ``{"lines": n, "tag": t}`` prints
    ``n`` lines of about 1 KiB, each starting with ``t``."""

    def handle_call(self, msg: Any, state: Any) -> tuple[Any, Any]:
        line = f"{msg['tag']} " + "x" * 1000 + "\n"
        for _ in range(int(msg["lines"])):
            sys.stdout.write(line)
        sys.stdout.flush()
        return os.getpid(), state
