"""The README's example runs and prints what the README shows; `make demo` runs; the README
and docs/ hold links that resolve, code that parses and a CLI and config that are real."""

from __future__ import annotations

import argparse
import ast
import glob
import os
import re
import subprocess
import sys
import tomllib

import pytest

from beamish.runtime.client.cli import build_parser
from beamish.runtime.node.config import parse_config
from tests.conftest import REPO

DOCS = sorted(glob.glob(os.path.join(REPO, "docs", "*.md")))
MARKDOWN = [os.path.join(REPO, "README.md"), *DOCS]


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


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as fh:
        return fh.read()


def _name(path: str) -> str:
    return os.path.relpath(path, REPO)


_FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.S | re.M)


def _blocks(text: str, lang: str) -> list[str]:
    """The fenced code blocks of ``text`` tagged ``lang``."""
    return [body for tag, body in _FENCE.findall(text) if tag == lang]


def _prose(text: str) -> str:
    """``text`` without its fenced code blocks (a ``#`` there is a comment, not a heading)."""
    return _FENCE.sub("", text)


def _links(text: str) -> list[str]:
    """The targets of the markdown links and images outside code blocks."""
    return re.findall(r"\]\(([^)\s]+)\)", _prose(text))


def _anchors(text: str) -> set[str]:
    """The anchors GitHub makes for the headings of ``text``."""
    seen: dict[str, int] = {}
    anchors = set()
    for heading in re.findall(r"^#{1,6} +(.+?) *$", _prose(text), re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        anchors.add(slug if n == 0 else f"{slug}-{n}")
    return anchors


@pytest.mark.parametrize("path", MARKDOWN, ids=_name)
def test_every_relative_link_resolves(path):
    broken = []
    for target in _links(_read(path)):
        if re.match(r"[a-z]+:", target):
            continue  # http(s), mailto: not checked here
        file, _, anchor = target.partition("#")
        dest = os.path.normpath(os.path.join(os.path.dirname(path), file)) if file else path
        if not dest.startswith(REPO + os.sep) or not os.path.exists(dest):
            broken.append(f"{target}: no such file")
        elif anchor and dest.endswith(".md") and anchor not in _anchors(_read(dest)):
            broken.append(f"{target}: no heading with that anchor in {_name(dest)}")
    assert not broken, f"{_name(path)}: " + "; ".join(broken)


def test_the_readme_and_the_docs_index_link_every_doc_page():
    pages = {os.path.basename(p) for p in DOCS} - {"README.md"}
    assert pages, "docs/ is empty"
    readme = set(_links(_read(os.path.join(REPO, "README.md"))))
    index = set(_links(_read(os.path.join(REPO, "docs", "README.md"))))
    assert not {p for p in pages if f"docs/{p}" not in readme}, "a page the README misses"
    assert not {p for p in pages if p not in index}, "a page docs/README.md misses"


def test_benchmark_figures_are_only_in_the_generated_report():
    readme = _read(os.path.join(REPO, "README.md"))
    assert "](benchmarks/REPORT.md)" in readme
    assert not re.search(r"^\|", _prose(readme), re.M), "a table (of figures?) in the README"


@pytest.mark.parametrize("path", MARKDOWN, ids=_name)
def test_python_blocks_compile(path):
    for body in _blocks(_read(path), "python"):
        compile(body, _name(path), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)


@pytest.mark.parametrize("path", MARKDOWN, ids=_name)
def test_toml_blocks_are_configs_the_node_accepts(path):
    for body in _blocks(_read(path), "toml"):
        parse_config(tomllib.loads(body), _name(path))


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _options(parser: argparse.ArgumentParser) -> set[str]:
    return {opt for action in parser._actions for opt in action.option_strings}


def test_the_cli_page_shows_every_command_with_real_options():
    """docs/cli.md's synopsis names every command, and only options each one takes."""
    parser = build_parser()
    commands = _subcommands(parser)
    for group in ("node", "keys"):
        commands.update({f"{group} {v}": p
                         for v, p in _subcommands(commands.pop(group)).items()})
    (synopsis,) = [b for b in _blocks(_read(os.path.join(REPO, "docs", "cli.md")), "")
                   if b.startswith("beamish ")]
    lines: list[str] = []
    for line in synopsis.splitlines():
        line = line.split("#")[0].rstrip()
        if line.startswith(" "):
            lines[-1] += " " + line.strip()  # a continuation of the command above
        else:
            lines.append(line.removeprefix("beamish "))
    shown = set()
    for line in lines:
        for usage in line.split(" | "):
            words = usage.split()
            verb = " ".join(words[:2]) if words[0] in ("node", "keys") else words[0]
            if verb.startswith("--"):
                assert verb in _options(parser), verb
                continue
            assert verb in commands, f"docs/cli.md shows a command beamish lacks: {verb}"
            shown.add(verb)
            unknown = set(re.findall(r"--[\w-]+", usage)) - _options(commands[verb])
            assert not unknown, f"beamish {verb} takes no {sorted(unknown)}"
    assert shown == set(commands), f"not in docs/cli.md: {sorted(set(commands) - shown)}"
