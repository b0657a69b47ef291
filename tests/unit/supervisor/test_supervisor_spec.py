"""Spec validation: every error names the field, the value given and what was expected."""

from __future__ import annotations

import math
from typing import Any

import pytest

from beamish.supervisor import (
    ChildKind,
    ChildSpec,
    ExitKind,
    ExitReason,
    InvalidSpec,
    RestartType,
    Strategy,
    SupervisorError,
    SupervisorSpec,
    check_child_specs,
)


def test_child_spec_defaults() -> None:
    spec = ChildSpec("a")
    assert (spec.kind, spec.restart, spec.shutdown, spec.backoff) == (ChildKind.AGENT, RestartType.PERMANENT, 5.0, None)
    assert spec.shutdown_seconds == 5.0


def test_supervisor_child_shutdown_defaults_to_infinity() -> None:
    spec = ChildSpec.for_supervisor(SupervisorSpec("workers"))
    assert spec.kind is ChildKind.SUPERVISOR
    assert spec.shutdown == "infinity"
    assert spec.shutdown_seconds == math.inf


@pytest.mark.parametrize("shutdown", ["brutal_kill", 10.0, 0])
def test_supervisor_child_shutdown_other_than_infinity_is_refused(shutdown: object) -> None:
    # A supervisor is a thread: there is nothing to kill, so a timeout could not be honoured.
    with pytest.raises(InvalidSpec, match=r"invalid shutdown: .*\(expected \"infinity\" for a child of kind supervisor"):
        ChildSpec.for_supervisor(SupervisorSpec("workers"), shutdown=shutdown)  # type: ignore[arg-type]
    assert ChildSpec.for_supervisor(SupervisorSpec("w"), shutdown=math.inf).shutdown == "infinity"


@pytest.mark.parametrize(
    ("shutdown", "stored", "seconds"),
    [("brutal_kill", "brutal_kill", 0.0), ("infinity", "infinity", math.inf), (math.inf, "infinity", math.inf),
     (2, 2.0, 2.0), (0, 0.0, 0.0)],
)
def test_shutdown_values(shutdown: Any, stored: Any, seconds: float) -> None:
    spec = ChildSpec("a", shutdown=shutdown)
    assert spec.shutdown == stored
    assert spec.shutdown_seconds == seconds


def test_strings_are_coerced_to_enums() -> None:
    spec = ChildSpec("a", "agent", "transient")  # type: ignore[arg-type]
    assert spec.restart is RestartType.TRANSIENT
    sup = SupervisorSpec("s", "rest_for_one")  # type: ignore[arg-type]
    assert sup.strategy is Strategy.REST_FOR_ONE


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"id": ""}, "id"),
        ({"id": 3}, "id"),
        ({"restart": "forever"}, "restart"),
        ({"kind": "worker"}, "kind"),
        ({"shutdown": -1}, "shutdown"),
        ({"shutdown": "soon"}, "shutdown"),
        ({"shutdown": True}, "shutdown"),
        ({"shutdown": math.nan}, "shutdown"),
        ({"backoff": (0, 1)}, "backoff"),
        ({"backoff": (2, 1)}, "backoff"),
        ({"backoff": (1, math.inf)}, "backoff"),
        ({"backoff": 1.0}, "backoff"),
        ({"kind": "supervisor"}, "supervisor"),
        ({"supervisor": SupervisorSpec("x")}, "supervisor"),
        ({"kind": "supervisor", "supervisor": SupervisorSpec("other")}, "supervisor.id"),
    ],
)
def test_invalid_child_spec_names_the_field(kwargs: dict[str, Any], field: str) -> None:
    kwargs = {"id": "a", **kwargs}
    with pytest.raises(InvalidSpec) as info:
        ChildSpec(**kwargs)
    assert info.value.field == field
    assert f"invalid {field}:" in str(info.value)
    assert "expected" in str(info.value)
    assert isinstance(info.value, ValueError) and isinstance(info.value, SupervisorError)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"strategy": "one_for_some"}, "strategy"),
        ({"max_restarts": -1}, "max_restarts"),
        ({"max_restarts": 1.5}, "max_restarts"),
        ({"max_restarts": True}, "max_restarts"),
        ({"max_seconds": 0}, "max_seconds"),
        ({"max_seconds": math.inf}, "max_seconds"),
        ({"per_child_intensity": 1}, "per_child_intensity"),
        ({"per_child_intensity": True, "strategy": "one_for_all"}, "per_child_intensity"),
        ({"backoff": (1, 0.5)}, "backoff"),
        ({"strategy": "simple_one_for_one"}, "template"),
        ({"template": ChildSpec("t")}, "template"),
        ({"strategy": "simple_one_for_one", "template": ChildSpec("t"), "children": (ChildSpec("a"),)}, "children"),
        ({"children": (ChildSpec("a"), ChildSpec("a"))}, "children[1].id"),
        ({"children": ("a",)}, "children[0]"),
    ],
)
def test_invalid_supervisor_spec_names_the_field(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidSpec) as info:
        SupervisorSpec("s", **kwargs)
    assert info.value.field == field


def test_invalid_spec_message_shows_value_and_expectation() -> None:
    with pytest.raises(InvalidSpec, match=r"invalid restart: 'forever' \(expected one of permanent, transient, temporary\)"):
        ChildSpec("a", restart="forever")  # type: ignore[arg-type]


def test_check_child_specs_returns_a_tuple() -> None:
    assert check_child_specs([ChildSpec("a"), ChildSpec("b")]) == (ChildSpec("a"), ChildSpec("b"))


def test_simple_one_for_one_template_renamed() -> None:
    sup = SupervisorSpec("pool", Strategy.SIMPLE_ONE_FOR_ONE, template=ChildSpec("tpl", restart=RestartType.TRANSIENT))
    child = sup.child_of_template("w1")
    assert child == ChildSpec("w1", restart=RestartType.TRANSIENT)
    nested_tpl = ChildSpec.for_supervisor(SupervisorSpec("tpl"))
    assert nested_tpl.renamed("s1").supervisor == SupervisorSpec("s1")


def test_backoff_for_falls_back_to_supervisor() -> None:
    sup = SupervisorSpec("s", backoff=(0.5, 4))
    assert sup.backoff_for(ChildSpec("a")) == (0.5, 4.0)
    assert sup.backoff_for(ChildSpec("a", backoff=(1, 2))) == (1.0, 2.0)


@pytest.mark.parametrize(
    ("reason", "is_normal"),
    [(ExitReason.normal(), True), (ExitReason.shutdown(), True), (ExitReason.abnormal("boom"), False)],
)
def test_exit_reason_is_normal(reason: ExitReason, is_normal: bool) -> None:
    assert reason.is_normal is is_normal


@pytest.mark.parametrize(
    ("code", "kind", "detail"),
    [(0, ExitKind.NORMAL, "exit code 0"), (1, ExitKind.ABNORMAL, "exit code 1"),
     (-9, ExitKind.ABNORMAL, "killed by SIGKILL"), (-11, ExitKind.ABNORMAL, "killed by SIGSEGV")],
)
def test_exit_reason_from_returncode(code: int, kind: ExitKind, detail: str) -> None:
    assert ExitReason.from_returncode(code) == ExitReason(kind, detail)


def test_exit_reason_str() -> None:
    assert str(ExitReason.abnormal("boom")) == "abnormal: boom"
    assert str(ExitReason.shutdown()) == "shutdown"
