"""What `make demo` and the benchmarks leave a user with: the demo's closing summary names
paths that exist; the report names its targets by what they measure, cites no file outside
the repository and embeds the charts, fault recovery among them, which are written beside
it; no two paths of the repository (or of a run's output) differ only by case; the package
metadata declares its license in the non-deprecated form."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib

import pytest

from benchmarks.__main__ import render
from benchmarks._report import Verdict, Written, target_verdicts
from examples.demo import summary
from tests.conftest import REPO

COMMITTED = os.path.join(REPO, "benchmarks")


def case_collisions(paths: list[str]) -> list[list[str]]:
    """The groups of paths (files, and the folders they are in) that a case-insensitive file
    system would take for one, each group sorted; groups in path order."""
    seen: dict[str, set[str]] = {}
    for path in paths:
        parts = path.split("/")
        for i in range(1, len(parts) + 1):
            prefix = "/".join(parts[:i])
            seen.setdefault(prefix.lower(), set()).add(prefix)
    return [sorted(group) for _, group in sorted(seen.items()) if len(group) > 1]


@pytest.mark.parametrize(("paths", "groups"), [
    ([], []),
    (["a/b.py", "a/c.py", "README.md"], []),
    (["benchmarks/REPORT.md", "benchmarks/report.md"],
     [["benchmarks/REPORT.md", "benchmarks/report.md"]]),
    # two folders differing by case, holding different files: the folders collide
    (["Docs/a.md", "docs/b.md"], [["Docs", "docs"]]),
    (["x/Y/z", "x/y/Z"], [["x/Y", "x/y"], ["x/Y/z", "x/y/Z"]]),
    (["Makefile", "makefile", "src/Makefile"], [["Makefile", "makefile"]]),
])
def test_case_collisions_finds_paths_differing_only_by_case(paths, groups):
    assert case_collisions(paths) == groups


def _repository_paths() -> list[str]:
    """Every path of the checkout that git would commit (tracked, or untracked and not
    ignored); without git metadata (an unpacked sdist), every file under the folder."""
    if os.path.isdir(os.path.join(REPO, ".git")) or os.path.isfile(os.path.join(REPO, ".git")):
        out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                              "--exclude-standard"], cwd=REPO, capture_output=True, check=True)
        return [p for p in out.stdout.decode().split("\0") if p]
    paths = []
    for root, dirs, files in os.walk(REPO):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d != "__pycache__"]
        paths.extend(os.path.relpath(os.path.join(root, f), REPO) for f in files)
    return paths


def test_no_two_paths_of_the_repository_differ_only_by_case():
    paths = _repository_paths()
    assert len(paths) > 50, "the listing found too few files to mean anything"
    assert case_collisions(paths) == []


@pytest.mark.parametrize(("report", "verdicts"), [
    ("", ()),
    ("| target | figure | |\n| --- | --- | --- |\n| spawn: 1,000 in 4 s | 5.39 s | **missed** |\n"
     "| noisy: p99 within 1.5× | 1.28× | **met** |\n",
     (Verdict("spawn: 1,000 in 4 s", False), Verdict("noisy: p99 within 1.5×", True))),
    # the durability table has a bound column; "not measured" is no verdict
    ("| durable cast | 1.07× | ≥ 0.50× | **met** |\n| durable call p50 | — | ≤ 2× | not measured |",
     (Verdict("durable cast", True),)),
    # a figure row of the big table mentioning "met" is not a target
    ("| fault: exception | survivors failed · back in | 0 · 11.6 ms | — | |", ()),
])
def test_target_verdicts_reads_each_targets_row(report, verdicts):
    assert target_verdicts(report) == verdicts


def _written(targets: tuple[Verdict, ...], charts: tuple[str, ...]) -> Written:
    return Written(out_dir="/r", results="/r/results.json", report="/r/REPORT.md",
                   charts=charts, table="", targets=targets)


@pytest.mark.parametrize(("written", "status", "present", "absent"), [
    (None, 0, ["== summary", "node dir: /n", "skipped"], ["report:", "charts:"]),
    (_written((Verdict("a", True), Verdict("b", False)), ("/r/x.png", "/r/y.png")), 0,
     ["targets:  1 of 2 met", "missed: b", "report:   /r/REPORT.md", "charts:   /r/x.png",
      "          /r/y.png", "figures:  /r/results.json"], ["missed: a", "failure"]),
    (_written((), ()), 1, ["charts:   none (matplotlib", "reported a failure"], ["targets:"]),
])
def test_summary_says_what_was_shown_and_where_everything_is(written, status, present, absent):
    text = "\n".join(summary("/n", written, status))
    assert "SIGKILL" in text and "SIGSEGV" in text
    for part in present:
        assert part in text
    for part in absent:
        assert part not in text


def _committed_results() -> dict:
    with open(os.path.join(COMMITTED, "results.json")) as fh:
        return json.load(fh)


def _images(markdown: str) -> list[str]:
    return re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", markdown)


def test_the_committed_results_render_with_a_fault_recovery_chart(tmp_path):
    pytest.importorskip("matplotlib")
    written = render(_committed_results(), os.path.join(COMMITTED, "results.json"),
                     str(tmp_path))
    assert written.report == str(tmp_path / "REPORT.md")
    assert os.path.isfile(written.report)
    names = [os.path.basename(p) for p in written.charts]
    assert "fault_recovery.png" in names
    for path in written.charts:
        with open(path, "rb") as fh:
            assert fh.read(8) == b"\x89PNG\r\n\x1a\n", path
    with open(written.report, encoding="utf-8") as fh:
        report = fh.read()
    assert sorted(_images(report)) == sorted(names)
    # Each verdict read back is the one the report's own row shows.
    by_target = {v.target: v.met for v in written.targets}
    assert len(written.targets) >= 10
    assert any(target.startswith("fault matrix") for target in by_target)
    for target, met in by_target.items():
        row = next(line for line in report.splitlines() if line.startswith(f"| {target} |"))
        assert row.endswith("**met** |" if met else "**missed** |"), (target, row)


@pytest.mark.parametrize("path", [os.path.join(COMMITTED, "REPORT.md"),
                                  os.path.join(REPO, "docs", "benchmarks.md")],
                         ids=lambda p: os.path.relpath(p, REPO))
def test_reports_name_targets_by_what_they_measure_and_cite_files_that_exist(path):
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    assert not re.search(r"\bissues? \d", text, re.I), "a target labelled by its issue number"
    for name in re.findall(r"\b([\w./-]+\.(?:md|py|json|png|toml))\b", text):
        if "<" in name or name.startswith(("http", "DIR/")):
            continue
        here = os.path.normpath(os.path.join(os.path.dirname(path), name))
        anywhere = [p for p in _repository_paths() if p.endswith("/" + name) or p == name]
        assert os.path.exists(here) or anywhere, f"{name}: no such file in the repository"


def test_the_committed_report_embeds_every_chart_beside_it():
    with open(os.path.join(COMMITTED, "REPORT.md"), encoding="utf-8") as fh:
        images = _images(fh.read())
    assert "fault_recovery.png" in images
    for name in images:
        assert os.path.isfile(os.path.join(COMMITTED, name)), name


def test_the_demo_ends_with_a_summary_of_paths_that_exist(tmp_path):
    """A real demo run with the quickest benchmark scenario: every absolute path of its
    summary exists, its report and a chart among them; the run's output folder has no two
    names differing only by case (it used to hold report.md beside REPORT.md)."""
    pytest.importorskip("matplotlib")
    out = tmp_path / "bench"
    proc = subprocess.run([sys.executable, os.path.join(REPO, "examples", "demo.py"),
                           "--scenarios", "call", "--out", str(out)], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    tail = proc.stdout[proc.stdout.rindex("== summary"):]
    assert "# beamish benchmarks" not in proc.stdout, "the report's Markdown was dumped"
    paths = re.findall(r"(?<![\w.])(/[^\s()]+)", tail)
    assert str(out / "REPORT.md") in paths and str(out / "results.json") in paths
    assert str(out / "call_latency.png") in paths
    missing = [p for p in paths if not os.path.exists(p)]
    assert not missing, tail
    assert case_collisions(sorted(os.listdir(out))) == []


def test_the_license_is_an_spdx_string():
    """setuptools deprecates the ``license = { text = ... }`` table (a warning on every
    install); the SPDX string needs setuptools >= 77 to build."""
    with open(os.path.join(REPO, "pyproject.toml"), "rb") as fh:
        pyproject = tomllib.load(fh)
    assert isinstance(pyproject["project"]["license"], str)
    assert "setuptools>=77" in pyproject["build-system"]["requires"]
