"""A module that sets SIGCHLD to ignored when imported (as some libraries do to avoid
zombies): imported into the zygote, it would make the kernel reap agents silently."""

from __future__ import annotations

import signal

from tests.agents.basic import Counter

signal.signal(signal.SIGCHLD, signal.SIG_IGN)


class Quiet(Counter):
    """The plain counter; what matters is the import above."""
