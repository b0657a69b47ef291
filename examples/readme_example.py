"""The README's first example: two agents, one killed, restarted with its state."""

import os
import signal
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from beamish.runtime import start_node  # noqa: E402

node = start_node(tempfile.mkdtemp(prefix="bm-", dir="/tmp"))
try:
    a = node.spawn("examples.agents:Counter", name="a", args={"start": 10})
    b = node.spawn("examples.agents:Counter", name="b")
    print(a.call("incr"), b.call("incr"))        # each in its own OS process
    os.kill(node.info("a").pid, signal.SIGKILL)  # let it crash
    print(a.call("get"))                         # restarted, with its committed state
    info = node.info("a")
    print(info.restarts, info.last_failure.kind)
    print(b.call("get"))                         # b never noticed
finally:
    node.shutdown()
