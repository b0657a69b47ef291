"""An agent's start, through real processes: an agent forked from the zygote imports
nothing the zygote had not imported already (an import after the fork costs every agent
its CPU and its pages: docs/memory.md)."""

from __future__ import annotations

import subprocess
import sys

from beamish.runtime import Limits

MODULES = "tests.agents.startup_agents:Modules"


def _zygote_modules() -> set[str]:
    """The modules of a fresh interpreter that imported what the zygote imports before
    its first fork (its own module and the agent loop, pydantic; runpy ran it, as
    ``python -m``) and the test agent's module (preloaded by the zygote at the first
    spawn)."""
    code = ("import sys, runpy, pydantic, beamish.runtime.agent.zygote, "
            "beamish.runtime.agent.loop, tests.agents.startup_agents\nprint('\\n'.join(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True)
    return set(out.stdout.split())


def test_an_agent_imports_nothing_after_the_fork(node):
    # Limits too: the start applies them (rlimits), a path every agent with limits takes.
    plain = node.spawn(MODULES, name="plain")
    limited = node.spawn(MODULES, name="limited",
                         limits=Limits(cpu_seconds=60, memory_mb=4096))
    known = _zygote_modules()
    for ref in (plain, limited):
        loaded = set(ref.call("modules", timeout=30))
        assert sorted(loaded - known) == [], ref.name
