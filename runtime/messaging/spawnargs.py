"""Turning `spawn` arguments into a checked request (shared by `Node` and `AgentContext`)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from .._types import Limits, LimitsMap, UserData, WireMap
from .._validation import check_limits, check_name, check_timeout, pack_roundtrip
from ..errors import ConfigError
from .codec import CODEC_ERRORS, send_error

RESTART_TYPES = ("permanent", "transient", "temporary")
# A spawn's durability: None (the node's own store) or "replicated" (the cluster's PostgreSQL).
SPAWN_DURABILITIES = (None, "replicated")
Shutdown = float | Literal["brutal_kill", "infinity"]


def class_path(cls: object) -> str:
    """Return ``"package.module:Class"`` for an agent class or a path string.

    Raises:
        ConfigError: the class lives in ``__main__`` (no other process can import it) or the
            string is not of the form ``module:Class``.
    """
    if isinstance(cls, str):
        head, sep, tail = cls.partition(":")
        if not sep or not head or not tail:
            raise ConfigError(f"agent class {cls!r} must be given as 'package.module:Class'")
        return cls
    module = getattr(cls, "__module__", None)
    qual = getattr(cls, "__qualname__", None)
    if not module or not qual:
        raise ConfigError(f"{cls!r} is not a class; pass an Agent subclass or 'module:Class'")
    if module == "__main__":
        raise ConfigError(
            f"agent class {qual} is defined in __main__, which an agent process cannot import: "
            "move it into a module and pass 'module:Class'")
    if "<locals>" in qual:
        raise ConfigError(f"agent class {qual} is defined inside a function; define it at "
                          "module level so an agent process can import it")
    return f"{module}:{qual}"


def check_shutdown(value: object) -> Shutdown:
    """Validate a child's ``shutdown`` (seconds, "brutal_kill" or "infinity")."""
    if value == "brutal_kill":
        return "brutal_kill"
    if value == "infinity":
        return "infinity"
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0 \
            and math.isfinite(value):
        return float(value)
    raise ConfigError(f"shutdown={value!r}: expected seconds >= 0, 'brutal_kill' or 'infinity'")


def check_args(args: UserData, name: str | None, max_bytes: int | None) -> None:
    """Check that a spawn's ``args`` encode, decode again and fit ``max_bytes``.

    Raises:
        BadMessage, MessageTooLarge: naming the agent and the args.
    """
    what = f"the args of spawn({name!r})" if name else "the spawn args"
    try:
        pack_roundtrip(args, where=what, limit=max_bytes)
    except CODEC_ERRORS as exc:
        raise send_error(exc, what=what) from None


@dataclass(frozen=True, slots=True)
class SpawnRequest:
    """A checked ``spawn`` control request (`spawn_request` builds one).

    Attributes:
        cls: the agent class path ``"package.module:Class"``.
        args: passed to its ``init``.
        name: its name, or None for the node to derive one.
        supervisor, restart, shutdown, limits: its place in the tree and its limits (the
            set fields of `Limits`).
        timeout: seconds the node waits for its ``init``.
        caller, caller_phase: the agent that spawns it, and where it runs (``init``,
            ``recover``, ...); None from a client.
        idle_timeout: seconds without a message before it falls asleep (None: never).
        lazy: register it asleep; its first message starts it.
        durability: "replicated" (its state and mailbox in the cluster's PostgreSQL,
            run by its shard's owner), or None: the node's own store.
    """

    cls: str
    args: UserData
    name: str | None
    supervisor: str
    restart: str
    shutdown: Shutdown
    limits: LimitsMap
    timeout: float
    caller: str | None = None
    caller_phase: str | None = None
    idle_timeout: float | None = None
    lazy: bool = False
    durability: str | None = None

    def to_wire(self) -> WireMap:
        """Return the request's arguments as the node's ``spawn`` command takes them."""
        wire: WireMap = {"cls": self.cls, "args": self.args, "name": self.name,
                         "supervisor": self.supervisor, "restart": self.restart,
                         "shutdown": self.shutdown, "limits": self.limits,
                         "timeout": self.timeout}
        if self.caller is not None:
            wire.update(caller=self.caller, caller_phase=self.caller_phase)
        if self.idle_timeout is not None:
            wire["idle_timeout"] = self.idle_timeout
        if self.lazy:
            wire["lazy"] = True
        if self.durability is not None:
            wire["durability"] = self.durability
        return wire


def spawn_request(cls: object, args: UserData | None = None, name: str | None = None,
                  supervisor: str = "root", restart: str = "permanent",
                  shutdown: float | str = 5.0, limits: Limits | Mapping[str, object] | None = None,
                  timeout: float = 30.0, idle_timeout: float | None = None,
                  lazy: bool = False, *, max_bytes: int | None = None,
                  durability: str | None = None) -> SpawnRequest:
    """Check spawn arguments and return the control request.

    Args:
        max_bytes: the node's ``max_message_bytes``, which ``args`` must fit.

    Raises:
        ConfigError: an argument is invalid (named, with what was expected).
        BadMessage: ``args`` holds a value msgpack cannot carry (or would not decode).
        MessageTooLarge: ``args`` is over ``max_bytes`` encoded.
    """
    if restart not in RESTART_TYPES:
        raise ConfigError(f"restart={restart!r}: expected one of {', '.join(RESTART_TYPES)}")
    if args is not None and not isinstance(args, dict):
        raise ConfigError(f"args={args!r:.80}: expected a dict")
    if name is not None:
        check_name(name)
    check_name(supervisor, "supervisor")
    check_args(args or {}, name, max_bytes)
    if isinstance(limits, Limits):
        limits = limits.to_dict()
    if not isinstance(lazy, bool):
        raise ConfigError(f"lazy={lazy!r}: expected True or False")
    if durability not in SPAWN_DURABILITIES:
        raise ConfigError(f"durability={durability!r}: expected one of "
                          f"{', '.join(repr(d) for d in SPAWN_DURABILITIES)} (the node's "
                          "own store: [node] durability; \"replicated\": in the cluster's "
                          "PostgreSQL)")
    return SpawnRequest(class_path(cls), args or {}, name, supervisor, restart,
                        check_shutdown(shutdown), check_limits(limits), check_timeout(timeout),
                        idle_timeout=None if idle_timeout is None
                        else check_timeout(idle_timeout, "idle_timeout"), lazy=lazy,
                        durability=durability)
