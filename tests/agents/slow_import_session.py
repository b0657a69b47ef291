"""An agent module whose import is slow when ``$BMT_SLOW_IMPORT`` (seconds) is set: it
first creates the file ``$BMT_SLOW_IMPORT_MARK``, then sleeps. The zygote probes an agent
module before its first fork (a trial import in a throwaway child), so a test can kill
the zygote while a fork of this agent waits on it (tests/integration/test_sessions_rules.py).
"""

from __future__ import annotations

import os
import time

if os.environ.get("BMT_SLOW_IMPORT"):
    if os.environ.get("BMT_SLOW_IMPORT_MARK"):
        open(os.environ["BMT_SLOW_IMPORT_MARK"], "a").close()
    time.sleep(float(os.environ["BMT_SLOW_IMPORT"]))

from tests.agents.session_agents import Session  # noqa: E402


class SlowSession(Session):
    """`Session`, from a module that is slow to import."""
