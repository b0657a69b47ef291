"""`connect("tcp://...")` works in a fresh interpreter that imported only
`beamish.runtime` (the remote client module is imported on first use)."""

from __future__ import annotations

import subprocess
import sys


def test_connect_over_tcp_needs_no_other_import(tmp_path):
    code = ("from beamish.runtime import ConfigError, connect\n"
            "try:\n"
            f"    connect('tcp://127.0.0.1:1', keys={str(tmp_path / 'none')!r})\n"
            "except ConfigError as exc:\n"
            "    print('ConfigError', exc)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ConfigError") and "holds no keys" in out.stdout
