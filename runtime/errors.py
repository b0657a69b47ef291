"""Every error a beamish user can see. All derive from `BeamishError`.

Each message says what happened, to which agent, and what to do about it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from ._upgrades import UpgradeReport
from ._values import AgentStatus, Failure, WireMap

ErrorAttrs = dict[str, Any]
"""An error's attributes by name, as an `ErrorReply` carries them: open, since each error
class has its own (``name``, ``size``, ``failure``, ...)."""


class BeamishError(Exception):
    """Root of every beamish error."""


class CallTimeout(BeamishError, TimeoutError):
    """A call got no reply in time. The request stays in the agent's mailbox and is
    still handled; its late reply is dropped (as in OTP).

    Attributes:
        target: the agent's name.
        timeout: the timeout in seconds.
    """

    def __init__(self, target: str, timeout: float) -> None:
        super().__init__(
            f"call to agent {target!r} got no reply within {timeout:g} s; the message stays "
            "queued and will still be handled (raise timeout=, or check `beamish ps` for a busy "
            "or restarting agent)"
        )
        self.target = target
        self.timeout = timeout


class AgentNotFound(BeamishError, LookupError):
    """No live or restarting agent has this name.

    Attributes:
        name: the name asked for.
    """

    def __init__(self, name: str, detail: str = "") -> None:
        super().__init__(
            f"no agent named {name!r} is running or restarting{': ' + detail if detail else ''} "
            "(see `beamish ps`; spawn it first)"
        )
        self.name = name


class RemoteError(BeamishError):
    """The agent's handler failed on this message.

    Attributes:
        type: the remote exception's class name (or the failure kind, e.g. "signal").
        message: the remote exception's message.
        traceback: the remote traceback text ("" if none).
        failure: the `Failure` the node classified.
        agent: the agent's name.
    """

    def __init__(self, agent: str, type: str, message: str, traceback: str = "",
                 failure: Failure | None = None) -> None:
        super().__init__(f"agent {agent!r} failed on this message: {type}: {message}")
        self.agent = agent
        self.type = type
        self.message = message
        self.traceback = traceback
        self.failure = failure


class MessageTooLarge(BeamishError, ValueError):
    """A message (or a spawn's args) is over the node's `max_message_bytes`; nothing was sent.

    Attributes:
        size: encoded size in bytes.
        limit: the limit in bytes.
    """

    def __init__(self, size: int, limit: int, target: str = "", what: str = "") -> None:
        to = f" to agent {target!r}" if target else ""
        super().__init__(
            f"{what or 'message' + to} is {size} bytes encoded, over max_message_bytes={limit}; "
            "nothing was sent (send a reference to the data, or raise max_message_bytes in the "
            "node config)"
        )
        self.size = size
        self.limit = limit


class NodeNotRunning(BeamishError, ConnectionError):
    """No node runs on this dir (or it stopped answering)."""


class NodeDown(BeamishError, ConnectionError):
    """The node that holds a node-pinned agent (``durability`` process, fsync or memory,
    in a cluster) is down or cut off: a call or cast to it fails within seconds rather
    than hang (SPEC, Cluster), and works again once that node is back.

    Attributes:
        node: the name of the node that is down.
        agent: the agent the request was for ("" if none was named).
        since: when it was found down (Unix time): its lease's expiry by the database's
            clock when the node was down before the request, this node's clock when its
            lease ran out while the request waited; 0.0 when it is a member whose lease
            has not run out but that did not answer.
        sent: whether the request had been sent to it before it was found down (then it
            may have been carried out, or be carried out when that node resumes).
    """

    def __init__(self, node: str, detail: str = "", agent: str = "", since: float = 0.0,
                 sent: bool = False) -> None:
        what = f"agent {agent!r} lives on node {node!r}, which" if agent else \
            f"node {node!r}"
        when = f" since {time.strftime('%H:%M:%S', time.gmtime(since))} UTC" \
            if since else ""
        maybe = ("; the request had been sent to it: it may have been carried out (or be, "
                 "if that node resumes), so check before you repeat it") if sent else \
            "; the request was not carried out"
        super().__init__(f"{what} is down{when}{': ' + detail if detail else ''}{maybe}. "
                         "What to do: retry once that node is back (its agents come back "
                         "with it; `beamish nodes` shows its lease)")
        self.node = node
        self.agent = agent
        self.since = since
        self.sent = sent


class NodeAlreadyRunning(BeamishError):
    """A node already runs on this dir; a dir holds one node at a time.

    Attributes:
        pid: the running daemon's pid.
    """

    def __init__(self, dir: str, pid: int) -> None:
        super().__init__(
            f"a node already runs on {dir!r} (pid {pid}); use connect({dir!r}) or stop it with "
            f"`beamish node stop --dir {dir}`"
        )
        self.pid = pid


class SpawnError(BeamishError):
    """An agent could not be spawned: bad class path, name in use, or its init failed.

    Attributes:
        name: the agent's name.
        failure: the `Failure` of its init, if it ran.
    """

    def __init__(self, name: str, message: str, failure: Failure | None = None) -> None:
        super().__init__(f"cannot spawn agent {name!r}: {message}")
        self.name = name
        self.failure = failure


class ConfigError(BeamishError, ValueError):
    """Bad configuration (a config file, a node dir, or an argument): names the field."""


class StateError(BeamishError, TypeError):
    """A handler returned state that cannot be stored (not msgpack data or a pydantic model)."""


class StoreError(BeamishError):
    """The store (LMDB, or the cluster's PostgreSQL) failed in a way beamish could not
    handle itself."""


class BeamishInternalError(BeamishError):
    """A bug in beamish: please report it with the node log."""


ERRORS: dict[str, type[BeamishError]] = {
    cls.__name__: cls
    for cls in (BeamishError, CallTimeout, AgentNotFound, RemoteError, MessageTooLarge,
                NodeNotRunning, NodeDown, NodeAlreadyRunning, SpawnError, ConfigError, StateError,
                StoreError, BeamishInternalError)
}


@dataclass(frozen=True, slots=True)
class ErrorReply:
    """An error as the node answers a control request with it: its class name, its message
    and its attributes; `error` rebuilds it on the client's side. Its wire form is
    ``{"type", "message", "attrs"}`` (`to_wire`, `from_wire`).

    Attributes:
        type: the error's class name (one of `ERRORS`; another rebuilds as `BeamishError`).
        message: ``str(error)``.
        attrs: its attributes (a `Failure` travels as `Failure.to_dict`).
    """

    type: str
    message: str
    attrs: ErrorAttrs = field(default_factory=dict)

    @classmethod
    def of(cls, exc: BeamishError) -> ErrorReply:
        """The reply for ``exc``: its plain attributes (str, int, float), and its failure
        (a spawn's, or a remote handler's: `RemoteError` over TCP)."""
        attrs: ErrorAttrs = {k: v for k, v in vars(exc).items()
                             if isinstance(v, (str, int, float))}
        failure = getattr(exc, "failure", None)  # a spawn's, a remote handler's
        if isinstance(failure, Failure):
            attrs["failure"] = failure.to_dict()
        return cls(type(exc).__name__, str(exc), attrs)

    def to_wire(self) -> WireMap:
        """Return the reply's wire form."""
        return {"type": self.type, "message": self.message, "attrs": self.attrs}

    @classmethod
    def from_wire(cls, data: object) -> ErrorReply:
        """Read a reply's wire form; what is missing or malformed reads as a bare
        `BeamishError` with what could be read."""
        if not isinstance(data, dict):
            return cls("BeamishError", "")
        attrs = data.get("attrs", {})
        return cls(str(data.get("type")), str(data.get("message", "")),
                   attrs if isinstance(attrs, dict) else {})

    def error(self) -> BeamishError:
        """Rebuild the error: its class (from `ERRORS`, else `BeamishError`), its message
        and its attributes, without running its ``__init__``."""
        cls = ERRORS.get(self.type, BeamishError)
        err = cls.__new__(cls)
        BeamishError.__init__(err, self.message)
        for key, value in self.attrs.items():
            if key == "failure" and isinstance(value, dict):
                value = Failure.from_dict(value)
            setattr(err, key, value)
        return err


def error_from_wire(data: object) -> BeamishError:
    """Rebuild an error the node sent as ``{"type", "message", "attrs"}``."""
    return ErrorReply.from_wire(data).error()


class BadMessage(BeamishError, TypeError):
    """A message (or reply, or a spawn's args) holds a value msgpack cannot carry, or one
    it would not decode again (a tuple dict key); nothing was sent."""


ERRORS["BadMessage"] = BadMessage


class StoreFullError(StoreError):
    """The filesystem holding the LMDB store (or the node dir) is full: nothing was
    committed. Free space there, or move the node dir to a larger filesystem."""


ERRORS["StoreFullError"] = StoreFullError


class StaleEpoch(StoreError):
    """A fenced commit found that its node no longer owns the shard at the epoch it was
    granted (another node took it over, or it was released): nothing was committed.

    Attributes:
        shard: the shard.
        node: the node that tried to commit.
        epoch: the epoch that node was granted.
        owner: the shard's owner now ("" if none).
        current: the shard's epoch now (-1 if the shard has no row).
    """

    def __init__(self, shard: int, node: str, epoch: int, owner: str | None,
                 current: int | None) -> None:
        now = "has no row" if current is None else \
            f"is owned by {owner!r} at epoch {current}" if owner else \
            f"has no owner (epoch {current})"
        super().__init__(
            f"node {node!r} holds shard {shard} at epoch {epoch}, but the shard {now}: "
            f"nothing was committed. What to do: stop this node's agents of shard {shard} "
            "(their owner now runs them); claim the shard again before committing for it")
        self.shard = shard
        self.node = node
        self.epoch = epoch
        self.owner = owner or ""
        self.current = -1 if current is None else current


class StoreUnavailable(StoreError, ConnectionError):
    """The cluster's PostgreSQL could not be reached, or the connection was lost before
    the commit was sent: nothing was committed. The store reconnects at its next use.

    Attributes:
        detail: what the driver said.
    """

    def __init__(self, detail: str) -> None:
        super().__init__(
            f"the cluster's PostgreSQL is unavailable ({detail}); nothing was committed. "
            "What to do: retry once it is back (check the server and the `postgres` DSN in "
            "`[cluster]`); the store reconnects by itself")
        self.detail = detail


class CommitOutcomeUnknown(StoreError):
    """The connection to the cluster's PostgreSQL was lost while the commit was in flight:
    it may or may not have committed. Neither acknowledge it as durable nor assume it
    failed: once the server is back, ask the store that raised it
    (``PgStore.commit_outcome(commit)``).

    Attributes:
        commit: the commit's number in that store (what ``commit_outcome`` takes).
        detail: what the driver said.
    """

    def __init__(self, commit: int, detail: str) -> None:
        super().__init__(
            f"the connection to the cluster's PostgreSQL was lost during commit {commit} "
            f"({detail}): it may or may not have committed. What to do: do not acknowledge "
            f"it; once the server is back, ask the store's commit_outcome({commit})")
        self.commit = commit
        self.detail = detail


class SchemaTooNew(StoreError):
    """The cluster's PostgreSQL holds a beamish schema newer than this beamish: it neither
    reads nor changes it. What to do: upgrade beamish on this machine (to the version of
    the nodes that wrote that schema)."""


ERRORS.update({cls.__name__: cls for cls in (StaleEpoch, StoreUnavailable,
                                              CommitOutcomeUnknown, SchemaTooNew)})


class AlreadyRunning(BeamishError):
    """A restart was asked of an agent or supervisor that is running (or about to restart):
    only a failed or stopped one can be restarted; the running one is left as it was.

    Attributes:
        name: the agent's or supervisor's name.
        status: its status.
    """

    def __init__(self, name: str, status: str = AgentStatus.RUNNING, what: str = "agent") -> None:
        state = "waiting for its restart (backoff)" if status == AgentStatus.BACKOFF else status
        super().__init__(
            f"{what} {name!r} is {state}: restart is for a failed or stopped one, and it was "
            f"left as it was (to restart it anyway, `beamish stop {name}` first, then "
            f"`beamish restart {name}`)" if what == "agent" else
            f"{what} {name!r} is {state}: restart is for a failed one, and it was left as it "
            "was")
        self.name = name
        self.status = status


ERRORS["AlreadyRunning"] = AlreadyRunning


class ShardCountMismatch(ConfigError):
    """A node was configured with a shard count other than its cluster's: the count is
    fixed when the cluster is created (every name's shard depends on it).

    Attributes:
        cluster: the cluster's name.
        shards: the cluster's shard count.
        configured: the count this node was given.
    """

    def __init__(self, cluster: str, shards: int, configured: int) -> None:
        super().__init__(
            f"cluster {cluster!r} has {shards} shards, but this node was configured with "
            f"{configured}: the count is fixed when a cluster is created; set "
            f"shards = {shards} in this node's [cluster] table")
        self.cluster = cluster
        self.shards = shards
        self.configured = configured


class NodeNameInUse(BeamishError):
    """A node tried to join its cluster under a name a live member already holds (two
    nodes with one name would own the same shards).

    Attributes:
        node: the name.
        cluster: the cluster's name.
    """

    def __init__(self, node: str, cluster: str, detail: str = "") -> None:
        super().__init__(
            f"node name {node!r} is held by a live member of cluster {cluster!r}"
            f"{': ' + detail if detail else ''}; give this node another name, or wait for "
            "the other one's lease to expire if it is gone (see `beamish nodes`)")
        self.node = node
        self.cluster = cluster


class LeaseLost(BeamishError):
    """A node's membership lease is gone: it expired, or a newer incarnation of the node
    replaced it. The node has stopped (or must stop) its replicated agents; it joins again
    with a new incarnation.

    Attributes:
        node: the node's name.
        cluster: the cluster's name.
    """

    def __init__(self, node: str, cluster: str, detail: str) -> None:
        super().__init__(f"node {node!r} lost its lease in cluster {cluster!r}: {detail}; "
                         "it must stop its replicated agents and join again")
        self.node = node
        self.cluster = cluster


for _cls in (ShardCountMismatch, NodeNameInUse, LeaseLost):
    ERRORS[_cls.__name__] = _cls


class PartialListing(StoreUnavailable):
    """``ps`` on a cluster node while the cluster's PostgreSQL cannot be read: the node
    listed its own agents only, not the cluster's replicated agents (``ps_page`` returns
    that page marked with ``unavailable`` instead of raising).

    Attributes:
        rows: the node's own agents that matched (`AgentInfo`), in name order.
        detail: why the replicated agents could not be read.
    """

    def __init__(self, rows: list[Any], detail: str) -> None:
        BeamishError.__init__(
            self, f"only this node's own {len(rows)} agent(s) are listed (in .rows): the "
            f"cluster's replicated agents could not be read ({detail}). What to do: retry "
            "once the cluster's PostgreSQL is back")
        self.rows = rows
        self.detail = detail


class UpgradeFailed(BeamishError):
    """A hot code upgrade stopped before its end: an agent's new code failed to start
    (its ``code_change`` or ``init`` raised). That agent is back on its old code with its
    state untouched, the agents not reached yet stay on the old code, and those moved
    before stay on the new one.

    Attributes:
        report: the `UpgradeReport` (moved, failed, skipped).
    """

    def __init__(self, report: UpgradeReport) -> None:
        failed = "; ".join(f"agent {f.name!r}: {f.error}" for f in report.failed)
        super().__init__(
            f"the upgrade stopped: {failed}. {len(report.moved)} agent(s) moved to the new "
            f"code before it, {len(report.skipped)} left where they were; fix the code (or "
            "its code_change) and run the upgrade again")
        self.report = report


class UpgradeImportError(UpgradeFailed):
    """A module's current code fails to import: the upgrade stopped before any agent
    moved, and the old code keeps serving.

    Attributes:
        module: the first module that fails.
        error: its import error (type and message).
        report: the `UpgradeReport`.
    """

    def __init__(self, report: UpgradeReport) -> None:
        first = report.import_failures[0]
        BeamishError.__init__(
            self, f"module {first.module!r} fails to import: {first.error}; no agent was "
            "moved and the old code keeps serving: fix the module and run the upgrade again")
        self.report = report
        self.module = first.module
        self.error = first.error


ERRORS["UpgradeFailed"] = UpgradeFailed
ERRORS["UpgradeImportError"] = UpgradeImportError


class DrainIncomplete(BeamishError):
    """``beamish node drain`` (`Node.drain`) ran out of time before the node had handed
    every shard off (most often: no other node alive and not draining could take them).
    The node stopped all the same and released its shards as it left: their messages stay
    in PostgreSQL for the next owner, but calls to their agents wait until a node claims
    them.

    Attributes:
        node: the node's name in its cluster.
        shards_left: the shards it still held.
        timeout: the drain's timeout (s).
        stalled: it ended before its timeout, as no node could take its shards for a
            while (`cluster.drain.STALL_GIVE_UP_S`).
    """

    def __init__(self, node: str, shards_left: int, timeout: float,
                 stalled: bool = False) -> None:
        if stalled:
            super().__init__(
                f"node {node!r} was not drained: no other node alive and not draining could "
                f"take its {shards_left} shard(s), so it stopped without waiting out its "
                f"{timeout:g} s, releasing them; start or undrain another node (`beamish "
                "nodes`), or stop the last node of a cluster with `beamish node stop`")
        else:
            super().__init__(
                f"node {node!r} was not drained within {timeout:g} s: {shards_left} "
                "shard(s) left, released as it stopped; check that another node is alive "
                "and not draining (`beamish nodes`), or give the drain more time "
                "(--timeout)")
        self.node = node
        self.shards_left = shards_left
        self.timeout = timeout
        self.stalled = stalled


ERRORS["DrainIncomplete"] = DrainIncomplete
