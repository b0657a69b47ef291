"""The packages depend one way only: mailbox and supervisor are leaves, runtime on top.
Each is imported in a fresh interpreter with what it must not use made unimportable."""

from __future__ import annotations

import subprocess
import sys

import pytest

CASES = {
    "beamish.supervisor": ["zmq", "lmdb", "msgpack", "psutil", "beamish.runtime",
                           "beamish.mailbox"],
    "beamish.mailbox": ["lmdb", "psutil", "beamish.runtime", "beamish.supervisor"],
}


@pytest.mark.parametrize("package", sorted(CASES))
def test_leaf_imports_without_forbidden_modules(package):
    blocked = "".join(f"sys.modules[{m!r}] = None\n" for m in CASES[package])
    code = f"import sys\n{blocked}import {package}\nprint('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_runtime_reexports_the_public_names():
    import beamish.runtime as rt
    import beamish.runtime.errors as errors
    for name in ("Agent start_node connect Node AgentRef Limits AgentInfo Event Failure Resume "
                 "Skip Reset Stop Escalate Down Exit").split():
        assert hasattr(rt, name), name
    for name in ("BeamishError CallTimeout AgentNotFound RemoteError MessageTooLarge "
                 "NodeNotRunning NodeAlreadyRunning SpawnError ConfigError").split():
        cls = getattr(errors, name)
        assert issubclass(cls, errors.BeamishError) and cls.__doc__, name
