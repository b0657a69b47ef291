"""Pure pieces of the CLI and the node's command dispatch (issue 9): hints, argument checks,
dir errors and config drift."""

from __future__ import annotations

import argparse
from dataclasses import replace
from typing import Any

import pytest

from beamish.runtime._paths import dir_error
from beamish.runtime.client.cli import _positive, _shutdown_arg, json_hint
from beamish.runtime.errors import ConfigError
from beamish.runtime.node.commands import check_args
from beamish.runtime.node.config import AgentSection, StartReport, agent_drift
from beamish.runtime.store.records import AgentRecord


@pytest.mark.parametrize(("text", "says"), [
    ("{start: 1}", "keys"), ("[a, 'b']", "array"), ("'incr'", "not single"),
    ("incr", "quote strings"),
])
def test_json_hint_fits_the_input(text, says):
    assert says in json_hint(text)


@pytest.mark.parametrize(("text", "value"), [
    ("1", 1.0), ("0.5", 0.5), ("1e3", 1000.0),
    ("0", None), ("-1", None), ("nan", None), ("inf", None), ("1e400", None), ("x", None),
])
def test_a_positive_flag_follows_check_timeout(text, value):
    parse = _positive("--timeout")
    if value is not None:
        assert parse(text) == value
    else:
        with pytest.raises(argparse.ArgumentTypeError,
                           match=f"^--timeout '{text}': expected a number > 0$"):
            parse(text)


@pytest.mark.parametrize(("text", "value"), [
    ("brutal_kill", "brutal_kill"), ("infinity", "infinity"), ("0", 0.0), ("5", 5.0),
    ("-1", None), ("inf", None), ("nan", None), ("x", None),
])
def test_the_shutdown_flag_follows_check_shutdown(text, value):
    if value is not None:
        assert _shutdown_arg(text) == value
    else:
        with pytest.raises(argparse.ArgumentTypeError, match=f"^--shutdown '{text}': expected "
                           "seconds >= 0, brutal_kill or infinity$"):
            _shutdown_arg(text)


def _cmd(node: Any, name: str, n: int = 1, when: float | None = None,
         args: dict[str, Any] | None = None) -> None:
    """A command signature to check against."""


@pytest.mark.parametrize(("args", "says"), [
    ({}, "missing argument 'name'"),
    ({"name": "a", "x": 1}, "unexpected argument 'x'"),
    ({"name": "a", "n": True}, "n=True: expected int"),
    ({"name": "a", "when": "soon"}, "when='soon': expected float or None"),
    ({"name": "a", "args": [1]}, "args=[1]: expected dict or None"),
])
def test_check_args_names_what_is_wrong(args, says):
    with pytest.raises(ConfigError, match="bad arguments to 'op'") as err:
        check_args("op", _cmd, args)
    assert says in str(err.value)


def test_check_args_accepts_good_arguments():
    check_args("op", _cmd, {"name": "a", "n": 2, "when": 1, "args": {"k": 1}})
    check_args("op", _cmd, {"name": "a", "when": None})


def test_dir_error_says_what_to_do():
    assert "not a directory" in str(dir_error("/x", NotADirectoryError(20, "no", "/x/y")))
    assert "permission denied" in str(dir_error("/x", PermissionError(13, "no", "/x")))


def test_agent_drift_names_fields_and_round_trips():
    agent = AgentSection.model_validate({"name": "c", "class": "m:C", "args": {"a": 1}})
    rec = AgentRecord("c", 1, cls="m:C", args={"a": 1}, supervisor="root",
                      restart="permanent", shutdown=5.0, limits={"memory_mb": None})
    assert agent_drift(rec, agent, "/d") is None
    drift = agent_drift(replace(rec, cls="m:Old", restart="temporary"), agent, "/d")
    assert drift is not None and drift.fields == ("cls", "restart")
    assert "beamish spawn m:C --name c" in drift.apply and "--dir /d" in drift.apply
    report = StartReport(drift=(drift,))
    assert StartReport.from_json(report.to_json()) == report
