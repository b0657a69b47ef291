"""Entry point of a replicated agent's process: ``python -m beamish.runtime.agent.replicated``
with its packed `Boot` record on stdin (``fence`` set, ``node.store`` the PostgreSQL DSN).

A fresh interpreter per replicated agent, started by its node (``node/cluster_node.py``),
not forked by the zygote: its store is the cluster's PostgreSQL, through its node's
committer (``agent/nodestore.py``) under the fence of its shard, and it dies with its
node (``PR_SET_PDEATHSIG``). Everything else is the same
`AgentLoop` as a node-pinned agent's.
"""

from __future__ import annotations

import os
import sys

from beamish.mailbox import unpack

from .._osproc import die_with_parent
from .loop import agent_main


def main() -> int:
    """Read the boot record from stdin and run the agent; return its exit code."""
    die_with_parent(int(os.environ.get("BEAMISH_NODE_PID", os.getppid())))
    boot = unpack(sys.stdin.buffer.read())
    return agent_main(boot)


if __name__ == "__main__":
    sys.exit(main())
