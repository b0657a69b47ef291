"""The README's example runs and prints what the README shows; `make demo` runs."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import REPO


def test_readme_example_output_matches_the_checked_in_file():
    out = subprocess.run([sys.executable, os.path.join(REPO, "examples", "readme_example.py")],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    with open(os.path.join(REPO, "examples", "readme_example.out")) as fh:
        assert out == fh.read()


def test_readme_shows_the_example_as_it_is():
    with open(os.path.join(REPO, "README.md")) as fh:
        readme = fh.read()
    with open(os.path.join(REPO, "examples", "readme_example.py")) as fh:
        example = fh.read()
    body = example[example.index("node = start_node"):].rstrip()
    assert body in readme
    with open(os.path.join(REPO, "examples", "readme_example.out")) as fh:
        assert fh.read().strip() in readme
    assert readme.index("make demo") < 200 and readme.index("make test") < 300


def _run_example(*args: str) -> str:
    proc = subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_demo_runs():
    out = _run_example("examples/demo.py", "--no-bench")
    assert "counter-3 answers again with its state: 9" in out
    assert out.count("RemoteError") == 3


def test_chat_demo_runs():
    out = _run_example("examples/chat_demo.py")
    assert "1 compaction(s) by recover" in out and "messages still there" in out


def test_quick_benchmark_smoke(tmp_path):
    out = _run_example("-m", "benchmarks", "--quick", "--scenarios", "call,durability",
                       "--out", str(tmp_path))
    assert "call round trip" in out and (tmp_path / "results.json").exists()
    assert "Durability targets" in out and "SIGKILLed agent" in out
