"""Child and supervisor specs: frozen, validated on construction.

The vocabulary is OTP's, unchanged (``one_for_one``, ``permanent``, ``brutal_kill``...),
with SPEC's names for the intensity knobs (``max_restarts``/``max_seconds``, OTP's
``intensity``/``period``) and one addition beyond OTP: restart ``backoff``.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final, Literal, TypeVar

from ._errors import InvalidSpec

__all__ = [
    "BRUTAL_KILL",
    "DEFAULT_AGENT_SHUTDOWN",
    "INFINITY",
    "ChildKind",
    "ChildSpec",
    "RestartType",
    "Shutdown",
    "Strategy",
    "SupervisorSpec",
    "check_child_specs",
]


class Strategy(enum.StrEnum):
    """How a supervisor restarts its children when one of them must be restarted."""

    ONE_FOR_ONE = "one_for_one"
    """Restart only the child that exited."""
    ONE_FOR_ALL = "one_for_all"
    """Terminate the other children (reverse start order), then start all of them."""
    REST_FOR_ONE = "rest_for_one"
    """Terminate the children started after it (reverse order), then start it and them."""
    SIMPLE_ONE_FOR_ONE = "simple_one_for_one"
    """Many children of one template, added and removed at run time; restarts as one_for_one."""


class RestartType(enum.StrEnum):
    """When a child that exited is restarted (OTP ``do_restart``)."""

    PERMANENT = "permanent"
    """Always restarted."""
    TRANSIENT = "transient"
    """Restarted only after an abnormal exit."""
    TEMPORARY = "temporary"
    """Never restarted; forgotten when it exits."""


class ChildKind(enum.StrEnum):
    """What a child is: an agent the runtime starts, or a nested supervisor."""

    AGENT = "agent"
    SUPERVISOR = "supervisor"


BRUTAL_KILL: Final = "brutal_kill"
"""Shutdown value: kill the child at once, without asking it to stop."""
INFINITY: Final = "infinity"
"""Shutdown value: ask the child to stop and wait for as long as it takes."""
DEFAULT_AGENT_SHUTDOWN: Final = 5.0
"""Seconds an agent gets to stop before it is killed, unless its spec says otherwise."""

Shutdown = float | Literal["brutal_kill", "infinity"]
"""A child's shutdown: seconds to wait after asking it to stop, ``"brutal_kill"`` or ``"infinity"``."""

_E = TypeVar("_E", bound=enum.Enum)


def _enum(cls: type[_E], value: Any, name: str) -> _E:
    if isinstance(value, cls):
        return value
    try:
        return cls(value)
    except ValueError:
        pass
    choices = ", ".join(str(m.value) for m in cls)
    raise InvalidSpec(name, value, f"one of {choices}")


def _id(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidSpec(name, value, "a non-empty str")
    return value


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _shutdown(value: Any, kind: ChildKind, name: str) -> Shutdown:
    if value is None:
        return INFINITY if kind is ChildKind.SUPERVISOR else DEFAULT_AGENT_SHUTDOWN
    if value in (BRUTAL_KILL, INFINITY):
        return value  # type: ignore[no-any-return]
    if _number(value) and not math.isnan(value) and value >= 0:
        return INFINITY if math.isinf(value) else float(value)
    raise InvalidSpec(name, value, 'seconds >= 0, "brutal_kill" or "infinity"')


def _backoff(value: Any, name: str) -> tuple[float, float] | None:
    if value is None:
        return None
    expected = "None or (min_s, max_s) with 0 < min_s <= max_s < inf"
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise InvalidSpec(name, value, expected)
    low, high = value
    if not (_number(low) and _number(high)) or not 0 < low <= high < math.inf:
        raise InvalidSpec(name, value, expected)
    return (float(low), float(high))


@dataclass(frozen=True)
class ChildSpec:
    """How to run one child.

    Strings are accepted for the enum fields (``restart="transient"``) and coerced.
    ``shutdown=None`` means the default for the kind: 5.0 seconds for an agent,
    ``"infinity"`` for a supervisor (as in OTP). ``math.inf`` is stored as ``"infinity"``.

    Attributes:
        id: The child's name, unique among its supervisor's children.
        kind: ``agent`` or ``supervisor``.
        restart: ``permanent``, ``transient`` or ``temporary``.
        shutdown: Seconds to wait after asking the child to stop before killing it,
            ``"brutal_kill"`` or ``"infinity"``; always ``"infinity"`` for a supervisor.
        backoff: ``(min_s, max_s)``: delay each restart exponentially with jitter,
            between ``min_s`` and ``max_s``; ``None`` uses the supervisor's backoff.
        supervisor: For a child of kind ``supervisor``, the nested supervisor's spec
            (its ``id`` must equal this child's ``id``).

    Raises:
        InvalidSpec: A field is malformed; the message names it.
    """

    id: str
    kind: ChildKind = ChildKind.AGENT
    restart: RestartType = RestartType.PERMANENT
    shutdown: Shutdown | None = None
    backoff: tuple[float, float] | None = None
    supervisor: SupervisorSpec | None = None

    def __post_init__(self) -> None:
        _id(self.id, "id")
        kind = _enum(ChildKind, self.kind, "kind")
        set_ = object.__setattr__
        set_(self, "kind", kind)
        set_(self, "restart", _enum(RestartType, self.restart, "restart"))
        set_(self, "shutdown", _shutdown(self.shutdown, kind, "shutdown"))
        set_(self, "backoff", _backoff(self.backoff, "backoff"))
        if kind is ChildKind.SUPERVISOR:
            if not isinstance(self.supervisor, SupervisorSpec):
                raise InvalidSpec(
                    "supervisor", self.supervisor, "a SupervisorSpec for a child of kind supervisor"
                )
            if self.supervisor.id != self.id:
                raise InvalidSpec("supervisor.id", self.supervisor.id, f"the child's id {self.id!r}")
            if self.shutdown != INFINITY:
                # A supervisor is a thread, not a process: there is nothing to kill. Its
                # subtree stops child by child, each agent within its own shutdown.
                raise InvalidSpec("shutdown", self.shutdown,
                                  '"infinity" for a child of kind supervisor (its agents stop within their own shutdown)')
        elif self.supervisor is not None:
            raise InvalidSpec("supervisor", self.supervisor, "None for a child of kind agent")

    @classmethod
    def for_supervisor(
        cls,
        spec: SupervisorSpec,
        restart: RestartType = RestartType.PERMANENT,
        shutdown: Shutdown | None = None,
    ) -> ChildSpec:
        """The child spec that runs a nested supervisor.

        Args:
            spec: The nested supervisor's spec; its id becomes the child's id.
            restart: The nested supervisor's restart type.
            shutdown: Must be ``"infinity"`` (the default): a supervisor is a thread, so
                nothing can be killed; its agents stop within their own shutdown.

        Returns:
            A spec of kind ``supervisor``.
        """
        return cls(spec.id, ChildKind.SUPERVISOR, restart, shutdown, supervisor=spec)

    @property
    def shutdown_seconds(self) -> float:
        """The shutdown as seconds: 0.0 for ``brutal_kill``, ``math.inf`` for ``infinity``."""
        if self.shutdown == BRUTAL_KILL:
            return 0.0
        if self.shutdown == INFINITY:
            return math.inf
        assert isinstance(self.shutdown, float)
        return self.shutdown

    def renamed(self, id: str) -> ChildSpec:
        """A copy under another id (a nested supervisor's spec is renamed too).

        Args:
            id: The new id.

        Returns:
            The renamed spec.
        """
        nested = self.supervisor
        if nested is not None:
            nested = dataclasses.replace(nested, id=id)
        return dataclasses.replace(self, id=id, supervisor=nested)


def check_child_specs(specs: Iterable[ChildSpec], name: str = "children") -> tuple[ChildSpec, ...]:
    """Check a list of child specs: each a :class:`ChildSpec`, ids unique.

    Args:
        specs: The specs, in start order.
        name: The field name used in errors.

    Returns:
        The specs as a tuple.

    Raises:
        InvalidSpec: An entry is not a ChildSpec, or an id repeats.
    """
    out = tuple(specs)
    seen: set[str] = set()
    for i, spec in enumerate(out):
        if not isinstance(spec, ChildSpec):
            raise InvalidSpec(f"{name}[{i}]", spec, "a ChildSpec")
        if spec.id in seen:
            raise InvalidSpec(f"{name}[{i}].id", spec.id, "an id not used by an earlier child")
        seen.add(spec.id)
    return out


@dataclass(frozen=True)
class SupervisorSpec:
    """How a supervisor behaves.

    Attributes:
        id: The supervisor's name.
        strategy: ``one_for_one``, ``one_for_all``, ``rest_for_one`` or ``simple_one_for_one``.
        max_restarts: More than this many restarts within ``max_seconds`` exceeds the
            intensity (OTP ``intensity``; default 3).
        max_seconds: The intensity period in seconds (OTP ``period``; default 5.0).
        per_child_intensity: Count intensity per child instead of per supervisor: a
            child past it is marked ``failed`` (left stopped, restartable by hand)
            while the others go on. For the node's root supervisor, which hosts many
            independent agents. Only with ``one_for_one``/``simple_one_for_one``.
        backoff: Default restart backoff ``(min_s, max_s)`` for children without their own.
        template: For ``simple_one_for_one``, the spec every child is made from (its
            ``id`` is replaced by each child's).
        children: Children started, in order, when the supervisor starts.

    Raises:
        InvalidSpec: A field is malformed; the message names it.
    """

    id: str
    strategy: Strategy = Strategy.ONE_FOR_ONE
    max_restarts: int = 3
    max_seconds: float = 5.0
    per_child_intensity: bool = False
    backoff: tuple[float, float] | None = None
    template: ChildSpec | None = None
    children: tuple[ChildSpec, ...] = field(default=())

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        _id(self.id, "id")
        strategy = _enum(Strategy, self.strategy, "strategy")
        set_(self, "strategy", strategy)
        if not isinstance(self.max_restarts, int) or isinstance(self.max_restarts, bool) or self.max_restarts < 0:
            raise InvalidSpec("max_restarts", self.max_restarts, "an int >= 0")
        if not _number(self.max_seconds) or not 0 < self.max_seconds < math.inf:
            raise InvalidSpec("max_seconds", self.max_seconds, "seconds > 0")
        set_(self, "max_seconds", float(self.max_seconds))
        if not isinstance(self.per_child_intensity, bool):
            raise InvalidSpec("per_child_intensity", self.per_child_intensity, "a bool")
        if self.per_child_intensity and strategy not in (Strategy.ONE_FOR_ONE, Strategy.SIMPLE_ONE_FOR_ONE):
            raise InvalidSpec(
                "per_child_intensity", True, f"False with strategy {strategy.value} (one_for_one or simple_one_for_one only)"
            )
        set_(self, "backoff", _backoff(self.backoff, "backoff"))
        children = check_child_specs(self.children)
        set_(self, "children", children)
        if strategy is Strategy.SIMPLE_ONE_FOR_ONE:
            if not isinstance(self.template, ChildSpec):
                raise InvalidSpec("template", self.template, "a ChildSpec for simple_one_for_one")
            if children:
                raise InvalidSpec("children", children, "() for simple_one_for_one (children are added at run time)")
        elif self.template is not None:
            raise InvalidSpec("template", self.template, "None unless strategy is simple_one_for_one")

    def child_of_template(self, id: str) -> ChildSpec:
        """The spec of a ``simple_one_for_one`` child named ``id``.

        Args:
            id: The new child's id.

        Returns:
            The template renamed to ``id``.

        Raises:
            InvalidSpec: This supervisor has no template.
        """
        if self.template is None:
            raise InvalidSpec("template", None, "a ChildSpec (only simple_one_for_one supervisors add children by id)")
        return self.template.renamed(_id(id, "id"))

    def backoff_for(self, child: ChildSpec) -> tuple[float, float] | None:
        """The backoff that applies to ``child``: its own, else this supervisor's.

        Args:
            child: One of this supervisor's children.

        Returns:
            ``(min_s, max_s)`` or ``None`` for immediate restarts.
        """
        return child.backoff if child.backoff is not None else self.backoff
