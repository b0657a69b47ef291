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
