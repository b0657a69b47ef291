"""Issue 9, the CLI and the node's command dispatch: every error path says what happened and
what to do (real node, real agents, real sockets; the CLI run as a subprocess)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import pytest

from beamish.runtime._cli import build_parser
from tests.conftest import REPO

pytestmark = pytest.mark.slow


def beamish(*args: str, cwd: str = REPO, env: dict[str, str] | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the CLI as a user would and return what it did (never raises on failure)."""
    full_env = dict(os.environ, PYTHONPATH=REPO, **(env or {}))
    return subprocess.run([sys.executable, "-m", "beamish.runtime", *args], cwd=cwd,
                          env=full_env, capture_output=True, text=True, timeout=timeout)


# -- item 9: the JSON hint fits the input ----------------------------------------------------

def test_an_object_with_bare_keys_gets_the_object_hint(node_dir):
    proc = beamish("spawn", "tests.agents.basic:Counter", "--args", "{start: 1}",
                   "--dir", node_dir)
    assert proc.returncode == 2, proc.stderr
    assert "not valid JSON" in proc.stderr
    assert "keys" in proc.stderr and '{"start": 1}' in proc.stderr
    assert '\'"incr"\'' not in proc.stderr  # the string hint is wrong for an object


def test_single_quotes_get_the_double_quote_hint(node_dir):
    proc = beamish("call", "c1", "['a']", "--dir", node_dir)
    assert proc.returncode == 2 and "double quotes" in proc.stderr, proc.stderr


def test_a_bare_word_still_gets_the_string_hint(node_dir):
    proc = beamish("call", "c1", "incr", "--dir", node_dir)
    assert proc.returncode == 2 and '\'"incr"\'' in proc.stderr, proc.stderr


# -- item 10: a CLI user is told the CLI command --------------------------------------------

def test_spawn_into_a_missing_supervisor_names_the_cli_command(node):
    proc = beamish("spawn", "tests.agents.basic:Counter", "--supervisor", "nosuch",
                   "--dir", node.dir)
    assert proc.returncode == 1
    assert "beamish add-supervisor nosuch" in proc.stderr, proc.stderr
    from beamish.runtime.errors import SpawnError
    with pytest.raises(SpawnError, match=r"node\.add_supervisor\('nosuch'"):
        node.spawn("tests.agents.basic:Counter", supervisor="nosuch")


# -- item 11: help for every argument, --version, limits, backoff, bench --dir ---------------

def _actions(parser: argparse.ArgumentParser, path: str = "beamish"):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _actions(sub, f"{path} {name}")
        else:
            yield path, action


def test_every_argument_of_every_verb_has_help():
    missing = [f"{path}: {action.option_strings or action.dest}"
               for path, action in _actions(build_parser()) if not action.help]
    assert not missing, "arguments without help text:\n" + "\n".join(missing)


def test_help_gives_units_and_defaults():
    out = beamish("call", "--help").stdout
    assert "seconds" in out and "default 5" in out, out
    out = beamish("spawn", "--help").stdout
    for word in ("--memory-mb", "--handler-timeout", "--cpu-seconds", "--shutdown",
                 "default root"):
        assert word in out, out


def test_version():
    proc = beamish("--version")
    assert proc.returncode == 0 and proc.stdout.startswith("beamish "), proc


def test_cli_spawn_sets_limits_and_add_supervisor_sets_backoff(node):
    proc = beamish("add-supervisor", "slow", "--backoff", "0.5", "2", "--dir", node.dir)
    assert proc.returncode == 0, proc.stderr
    proc = beamish("spawn", "tests.agents.basic:Counter", "--name", "lim", "--supervisor",
                   "slow", "--memory-mb", "256", "--handler-timeout", "7.5",
                   "--cpu-seconds", "30", "--shutdown", "brutal_kill", "--dir", node.dir)
    assert proc.returncode == 0, proc.stderr
    rec = node._store.read(lambda t: t.get_agent("lim"))
    assert rec["limits"] == {"memory_mb": 256.0, "handler_timeout": 7.5, "cpu_seconds": 30.0}
    assert rec["shutdown"] == "brutal_kill"
    sup = node._store.read(lambda t: t.get_sup("slow"))
    assert sup["backoff"] == [0.5, 2.0]


def test_cli_refuses_bad_limits(node):
    proc = beamish("spawn", "tests.agents.basic:Counter", "--memory-mb", "-1", "--dir", node.dir)
    assert proc.returncode == 2 and "--memory-mb" in proc.stderr, proc.stderr


def test_bench_refuses_dir(node_dir):
    for argv in (("bench", "--quick", "--dir", node_dir), ("--dir", node_dir, "bench")):
        proc = beamish(*argv)
        assert proc.returncode == 2 and "--dir" in proc.stderr, proc
        assert not os.path.exists(node_dir)
