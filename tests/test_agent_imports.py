"""What an agent's process imports: the zygote imports the agent layer and every agent is
forked from it, so each module it holds makes every fork slower and every agent's private
memory larger (docs/memory.md). The client and the node stay out of it."""

from __future__ import annotations

import subprocess
import sys

import pytest

# Never needed by an agent's process: the client facade, the node daemon, psutil (the
# node's process inspection).
NOT_IN_AN_AGENT = ("beamish.runtime.client", "beamish.runtime.node", "psutil")


@pytest.mark.parametrize("statement", [
    "import beamish.runtime.agent.loop",
    "from beamish.runtime import Agent",
    "from beamish.runtime import Stop, Failure, SpawnError",
])
def test_the_agent_side_does_not_import_the_client_or_the_node(statement):
    code = (f"import sys\n{statement}\n"
            f"print(sorted(m for m in sys.modules if m.startswith({NOT_IN_AN_AGENT!r})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_the_lazy_public_names_resolve_and_are_listed():
    code = ("import beamish.runtime as rt\n"
            "import beamish.runtime.client.api as api\n"
            "from beamish.runtime import Node, connect\n"
            "assert Node is api.Node and connect is api.connect\n"
            "assert {'Node', 'AgentRef', 'start_node', 'AgentContext'} <= set(dir(rt))\n"
            "try:\n    rt.NoSuchName\nexcept AttributeError as exc:\n    print(exc)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert "has no attribute 'NoSuchName'" in out.stdout
