"""The node config file (``beamish.toml``), validated with pydantic before anything starts.

A bad file is refused whole, naming the field's path, the value given and what was
expected; no node ever starts half-built.
"""

from __future__ import annotations

import json
import os
import shlex
import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from beamish.mailbox import DEFAULT_MAX_MESSAGE_BYTES

from .._types import UserData
from .._validation import LIMIT_MAX, check_name
from ..cluster.address import tcp_address
from ..errors import ConfigError
from ..messaging.spawnargs import check_shutdown, class_path
from ..store.records import AGENT_LOG_KEEP, AGENT_LOG_MAX_BYTES, AgentRecord
from .eventlog import EVENTS_KEPT


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NodeSection(_Strict):
    """``[node]``: how the node runs."""

    durability: Literal["process", "fsync", "memory"] = "process"
    strict: bool = False
    max_message_bytes: int = Field(DEFAULT_MAX_MESSAGE_BYTES, gt=0)
    max_restarts: int = Field(3, ge=0)
    max_seconds: float = Field(5.0, gt=0)
    # Modules the zygote imports before forking agents (their import is then shared).
    preload: list[str] = Field(default_factory=list)
    # Import each agent class's module in the zygote on its first spawn, so later spawns
    # of it skip the import (like gunicorn --preload). Turn off for modules whose import
    # starts threads or opens connections: those must not be inherited across fork.
    preload_agent_modules: bool = True
    # The event log (``beamish events``) keeps this many of the latest events in the store,
    # dropping the oldest (see docs/cli.md, "Events").
    events_kept: int = Field(EVENTS_KEPT, ge=1, le=100_000_000)
    # node.log (a background node's log, its agents' output too) is rotated past this size,
    # keeping this many older generations (node.log.1 the newest).
    log_max_bytes: int = Field(10 * 1024 * 1024, ge=4096)
    log_keep: int = Field(3, ge=1, le=100)
    # Each agent's own log (logs/NAME.log: its stdout, stderr and logging records) is
    # rotated past this size, keeping this many older generations (NAME.log.1 the newest).
    agent_log_max_bytes: int = Field(AGENT_LOG_MAX_BYTES, ge=4096)
    agent_log_keep: int = Field(AGENT_LOG_KEEP, ge=1, le=100)
    # At most this many agents awake: the least recently active idle ones are put to
    # sleep (None: unlimited). See docs/sessions.md.
    max_awake: int | None = Field(None, ge=1)
    # Serve Prometheus metrics at http://ADDRESS/metrics ("127.0.0.1:9464"; None: off).
    # See docs/metrics.md.
    metrics: str | None = None
    # Serve the live web view at http://ADDRESS/ ("127.0.0.1:8470"; None: off); it needs a
    # token, on loopback too (dashboard_token, else one is made; node.log has the link).
    # See docs/dashboard.md.
    dashboard: str | None = None
    dashboard_token: str | None = Field(None, min_length=16)

    @field_validator("metrics", "dashboard")
    @classmethod
    def _metrics(cls, value: str | None) -> str | None:
        if value is not None:
            listen_address(value)
        return value


@dataclass(frozen=True, slots=True)
class ListenAddress:
    """Where a node's HTTP endpoint listens (``[node] metrics``, ``[node] dashboard``).

    Attributes:
        host: an IP address (IPv6 without brackets), or ``localhost``.
        port: 1 to 65535.
    """

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


LOOPBACK = "127.0.0.1"


def listen_address(text: str) -> ListenAddress:
    """Parse ``"HOST:PORT"`` (``"[::1]:PORT"`` for IPv6; ``":PORT"`` or ``"PORT"`` alone
    listens on loopback, 127.0.0.1) (pure).

    Raises:
        ValueError: not of that form, a host that is not an IP address or ``localhost``,
            or a port outside 1-65535; the message shows the expected form.
    """
    import ipaddress
    form = ('expected "HOST:PORT" with HOST an IP address or localhost, e.g. '
            '"127.0.0.1:9464" (loopback only), "0.0.0.0:9464" (every interface) or '
            '"[::1]:9464"')
    host, sep, port = text.strip().rpartition(":")
    if not sep:
        host, port = LOOPBACK, text.strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"{text!r}: an IPv6 address takes brackets, e.g. \"[::1]:9464\"")
    host = host or LOOPBACK
    if host != "localhost":
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(f"{text!r}: host {host!r} is not an IP address; {form}") from None
    if not (port.isascii() and port.isdigit()) or not 1 <= int(port) <= 65535:
        raise ValueError(f"{text!r}: port {port!r} is not a number from 1 to 65535; {form}")
    return ListenAddress(host, int(port))


class ClusterSection(_Strict):
    """``[cluster]``: this node's part in a cluster (see docs/remote.md). ``listen`` opens
    the node's TCP front door (a CURVE server: ``keys`` is then required); ``name``,
    ``node`` and ``postgres`` are kept for cluster membership."""

    name: str | None = None
    node: str | None = None  # this node's name in the cluster (default: the host name)
    postgres: str | None = None  # or $BEAMISH_POSTGRES
    listen: str | None = None  # "tcp://HOST:PORT": the node's ROUTER, a CURVE server
    advertise: str | None = None  # how the others reach it (default: listen)
    keys: str | None = None  # the node's keys dir: its secret key, the authorized keys

    @field_validator("listen", "advertise")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        if value is not None:
            tcp_address(value, "")
        return value

    @field_validator("keys")
    @classmethod
    def _keys(cls, value: str | None) -> str | None:
        return None if value is None else os.path.expanduser(value)

    @model_validator(mode="after")
    def _listen_needs_keys(self) -> ClusterSection:
        if self.listen is not None and self.keys is None:
            raise ValueError("cluster.keys is required with cluster.listen: a node never "
                             "listens on TCP without CURVE keys (make them with `beamish "
                             "keys generate DIR`, then keys = \"DIR\")")
        return self


class LimitsSection(_Strict):
    """``limits = {...}`` of an agent."""

    memory_mb: float | None = Field(None, gt=0, le=LIMIT_MAX, allow_inf_nan=False)
    handler_timeout: float | None = Field(None, gt=0, le=LIMIT_MAX, allow_inf_nan=False)
    cpu_seconds: float | None = Field(None, gt=0, le=LIMIT_MAX, allow_inf_nan=False)


class SupervisorSection(_Strict):
    """One ``[[supervisor]]``."""

    name: str = Field(min_length=1)
    parent: str = "root"
    strategy: Literal["one_for_one", "one_for_all", "rest_for_one", "simple_one_for_one"] = \
        "one_for_one"
    max_restarts: int = Field(3, ge=0)
    max_seconds: float = Field(5.0, gt=0)
    restart: Literal["permanent", "transient", "temporary"] = "permanent"
    backoff: tuple[float, float] | None = None
    # simple_one_for_one: the template every agent spawned into it gets
    child_restart: Literal["permanent", "transient", "temporary"] = "permanent"
    child_shutdown: float | Literal["brutal_kill", "infinity"] = 5.0


class AgentSection(_Strict):
    """One ``[[agent]]``."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: str = Field(min_length=1)
    cls: str = Field(alias="class")
    supervisor: str = "root"
    restart: Literal["permanent", "transient", "temporary"] = "permanent"
    shutdown: float | Literal["brutal_kill", "infinity"] = 5.0
    args: UserData = Field(default_factory=dict)
    limits: LimitsSection = Field(default_factory=LimitsSection)
    # Seconds without a message after which it falls asleep (None: never).
    idle_timeout: float | None = Field(None, gt=0, le=LIMIT_MAX, allow_inf_nan=False)
    # Registered asleep: its process starts on its first message (init runs then).
    lazy: bool = False

    @field_validator("cls")
    @classmethod
    def _class_path(cls, value: str) -> str:
        try:
            return class_path(value)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("shutdown")
    @classmethod
    def _shutdown(cls, value: object) -> float | str:
        try:
            return check_shutdown(value)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None


class NodeConfig(_Strict):
    """The whole file: ``[node]``, ``[[supervisor]]`` and ``[[agent]]`` tables."""

    node: NodeSection = Field(default_factory=NodeSection)
    supervisor: list[SupervisorSection] = Field(default_factory=list)
    agent: list[AgentSection] = Field(default_factory=list)
    cluster: ClusterSection | None = None

    def check_tree(self) -> None:
        """Check names are unique and every parent/supervisor is declared before use.

        Raises:
            ConfigError: naming the offending entry.
        """
        known = {"root"}
        names: set[str] = set()
        for i, sup in enumerate(self.supervisor):
            check_name(sup.name, f"supervisor[{i}].name")
            if sup.name in known or sup.name in names:
                raise ConfigError(f"supervisor[{i}].name: {sup.name!r} is used twice")
            if sup.parent not in known:
                raise ConfigError(f"supervisor[{i}].parent: {sup.parent!r} is not 'root' or a "
                                  "supervisor declared above it")
            known.add(sup.name)
        for i, agent in enumerate(self.agent):
            check_name(agent.name, f"agent[{i}].name")
            if agent.name in names or agent.name in known:
                raise ConfigError(f"agent[{i}].name: {agent.name!r} is used twice")
            if agent.supervisor not in known:
                raise ConfigError(f"agent[{i}].supervisor: {agent.supervisor!r} is not 'root' "
                                  "or a declared supervisor")
            names.add(agent.name)


def _describe(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        path = ".".join(str(p) for p in e["loc"]) or "(file)"
        given = e.get("input")
        lines.append(f"  {path}: {e['msg']} (given: {given!r})")
    return "\n".join(lines)


def parse_config(data: Mapping[str, object], source: str = "config") -> NodeConfig:
    """Validate a config mapping.

    Raises:
        ConfigError: every problem, one per line, with its field path and the value given.
    """
    try:
        config = NodeConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source} is invalid; nothing was started:\n{_describe(exc)}") \
            from None
    try:
        config.check_tree()
    except ConfigError as exc:
        raise ConfigError(f"{source} is invalid; nothing was started:\n  {exc}") from None
    return config


def load_config(path: str) -> NodeConfig:
    """Read and validate a TOML config file.

    Raises:
        ConfigError: unreadable, not TOML, or invalid.
    """
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path!r}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path!r} is not valid TOML: {exc}") from None
    config = parse_config(data, f"config file {path!r}")
    cluster = config.cluster
    if cluster is not None and cluster.keys is not None:  # relative to the file's dir
        keys = os.path.join(os.path.dirname(os.path.abspath(path)), cluster.keys)
        config = config.model_copy(update={"cluster": cluster.model_copy(update={"keys": keys})})
    return config


@dataclass(frozen=True)
class AgentStartFailure:
    """An agent of the tree that did not start when the node started.

    Attributes:
        name: the agent's name.
        cls: its class path.
        reason: why (e.g. ``ModuleNotFoundError: No module named 'app'``).
    """

    name: str
    cls: str
    reason: str


@dataclass(frozen=True)
class ConfigDrift:
    """A config file entry for an agent the node already has, differing from its persisted
    record: the record wins (the file only adds what the store lacks).

    Attributes:
        name: the agent's name.
        fields: the fields that differ (``cls``, ``args``, ``supervisor``, ...).
        apply: the commands that apply the file's entry.
    """

    name: str
    fields: tuple[str, ...]
    apply: str


@dataclass(frozen=True)
class StartReport:
    """What a node start did not apply as the tree declares it (empty when all went well).

    Attributes:
        failures: agents that did not start.
        drift: config entries ignored because the persisted record differs.
    """

    failures: tuple[AgentStartFailure, ...] = ()
    drift: tuple[ConfigDrift, ...] = field(default_factory=tuple)

    def to_json(self) -> str:
        """Encode for the node's ready line."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> StartReport:
        """Decode `to_json`'s output."""
        data = json.loads(text)
        return cls(tuple(AgentStartFailure(**f) for f in data.get("failures", ())),
                   tuple(ConfigDrift(d["name"], tuple(d["fields"]), d["apply"])
                         for d in data.get("drift", ())))

    def lines(self) -> list[str]:
        """Human-readable lines, one problem each, saying what to do."""
        out = []
        for f in self.failures:
            out.append(f"agent {f.name!r} ({f.cls}) did not start: {f.reason}; fix it, then "
                       f"`beamish restart {f.name}`, or start the node again")
        for d in self.drift:
            out.append(f"agent {d.name!r}: the config file's entry differs from the node's "
                       f"persisted record in {', '.join(d.fields)}; the persisted record wins "
                       f"(the file only adds new entries). To apply the file's entry, keeping "
                       f"the agent's state: {d.apply}")
        return out


_AGENT_FIELDS = ("cls", "args", "supervisor", "restart", "shutdown", "limits")


def _limits(value: Mapping[str, float | None] | None) -> dict[str, float]:
    return {k: v for k, v in (value or {}).items() if v is not None}


def agent_drift(rec: AgentRecord, agent: AgentSection, dir: str) -> ConfigDrift | None:
    """Compare a persisted agent record with its config entry (pure): the differing
    fields and the commands that apply the entry (on node dir ``dir``), or None if they
    agree."""
    wanted = {"cls": agent.cls, "args": agent.args, "supervisor": agent.supervisor,
              "restart": agent.restart, "shutdown": agent.shutdown,
              "limits": _limits(agent.limits.model_dump())}
    have = {**{k: getattr(rec, k) for k in _AGENT_FIELDS}, "limits": _limits(rec.limits)}
    fields = tuple(k for k in _AGENT_FIELDS if json.dumps(wanted[k], sort_keys=True, default=str)
                   != json.dumps(have[k], sort_keys=True, default=str))
    if not fields:
        return None
    spawn = ["beamish", "spawn", agent.cls, "--name", agent.name, "--supervisor",
             agent.supervisor, "--restart", agent.restart, "--shutdown", str(agent.shutdown)]
    if agent.args:
        spawn += ["--args", json.dumps(agent.args)]
    for key, value in _limits(agent.limits.model_dump()).items():
        spawn += [f"--{key.replace('_', '-')}", str(value)]
    spawn += ["--dir", dir]
    stop = shlex.join(["beamish", "stop", agent.name, "--dir", dir])
    return ConfigDrift(agent.name, fields,
                       f"`{stop}` then `{shlex.join(spawn)}` (args are "
                       f"only read by init: a fresh start needs `beamish delete {agent.name}` "
                       "and a node restart, which erases its state)")
