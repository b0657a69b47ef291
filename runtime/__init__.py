"""beamish.runtime: agents in their own OS processes, supervised, with durable state.

``beamish.mailbox`` (wire format, sockets) and ``beamish.supervisor`` (specs and the pure
restart decisions) are leaves; this package wires them to the OS and is the public facade:
what this module re-exports is the API, everything else is internal. Its layers, top to
bottom; a module imports only its own layer and those below (``tests/test_layering.py``):

    client/     in the user's process      api.py (Node, AgentRef, start_node, connect,
                                           AsyncNode, AsyncAgentRef), remote.py
                                           (RemoteNode: the Node API over TCP/CURVE),
                                           cli.py (the ``beamish`` command), logs.py
                                           (reads and follows an agent's log),
                                           dashboard.py (``beamish dashboard``)
    node/       the node daemon process    daemon.py (builds the others and wires them;
                                           main loop, housekeeping, replies' wire form),
                                           commands.py (one function per control command,
                                           given a NodeView; their typed answers),
                                           registry.py (agent records' status transitions
                                           and the events they emit), eventlog.py (the
                                           event log, kept in the store: EventLog),
                                           spawner.py (starts agents, gathers exits),
                                           classify.py (what an exit means: pure),
                                           zygote_link.py (talks to the zygote),
                                           links.py (links and monitors), bounded.py
                                           (what is held for a pid not yet registered),
                                           config.py, timers.py (fires durable timers),
                                           readers.py (when dead processes' LMDB reader
                                           slots are cleared: pure),
                                           dashboard.py (the web view's server and
                                           access rules; its page: dashboard_page.py),
                                           sessions.py (sleeping agents: sleep, wake,
                                           idle_timeout, max_awake), activity.py,
                                           upgrade.py (hot code upgrade; its pure
                                           decisions: rollout.py), zygotes.py (the
                                           current zygote and older ones),
                                           cluster_node.py (a node in a cluster: its
                                           Membership's listener, the replicated agents
                                           of its shards, ClusterMessenger)
    cluster/    the node daemon process    placement.py (pure: a name's shard, rendezvous
                (cluster mode; keys:       owners, plan: claim/release/drop), lease.py
                the CLI too)               (pure: renew and self-fence timing),
                                           membership.py (the shell: lease and shards
                                           through store/postgres/cluster.py; run by
                                           node/cluster_node.py), status.py (a node's
                                           cluster state), keys.py (CURVE keys on
                                           disk: generate, authorize, load; pure checks),
                                           frontdoor.py (the node's TCP ROUTER, a CURVE
                                           server: its ZAP authenticator, refusals
                                           counted, the relay to the control socket,
                                           remote calls/casts), address.py (tcp://
                                           addresses: pure)
    agent/      the zygote and each agent  zygote.py (the fork server), loop.py (an agent's
                process                    message loop and group commit), policy.py (the
                                           loop's pure decisions: recover's answer, when a
                                           group commits), context.py (self.ctx), base.py
                                           (the Agent class), replicated.py (a
                                           replicated agent's process entry),
                                           inflight.py (what an agent is handling, for
                                           the node to read after a crash),
                                           logfile.py (its own log: stdio, logging,
                                           rotation; process titles)
    messaging/  any process                messenger.py (call/cast: append, ring, reply),
                                           amessenger.py (the same for asyncio code),
                                           control.py (requests to the node), wire.py
                                           (every frame between the runtime's processes:
                                           rings, replies, stop, reports, zygote pipe),
                                           spawnargs.py, codec.py (a codec error -> the
                                           public BadMessage/MessageTooLarge)
    store/      any process                records.py (every stored record, typed, with
                                           its wire form), protocol.py (the Store/Txn
                                           interface), lmdb.py (implements it; the only
                                           module that imports lmdb; writegate.py: its
                                           write lanes, calls ahead of casts while the
                                           writer lock is contended); open_store();
                                           postgres/ (the cluster's PostgreSQL: schema,
                                           fencing, PgStore for replicated agents,
                                           ring.py: wake-ups by LISTEN/NOTIFY; the
                                           only package that imports psycopg;
                                           open_postgres_store())
    (ground)    any process                errors.py, _types.py (public records),
                                           _validation.py, _paths.py, _osproc.py,
                                           _values.py (under errors.py: AgentStatus,
                                           Failure, the open-data aliases)

Where things happen:
    a message is appended    messaging/messenger.py  Messenger._append -> store Txn.append
                             (a batch: Messenger.cast_many, one transaction);
                             the agent finds it in agent/loop.py and commits its removal
                             with the new state (group commit: loop.py ``_Group``, its
                             rule agent/policy.py ``commit_before``)
    an exit is classified    node/classify.py  classify(ExitEvidence) (pure, -> Failure),
                             run by node/spawner.py AgentSpawner.on_exit -> _classify
    a restart is decided     beamish.supervisor.decide (pure), run by the supervisor shells
                             that node/daemon.py keeps, starting agents through spawner.py
    an agent's status moves  node/registry.py  Registry (AgentStatus, _values.py); records
                             and their stored form: store/records.py
    a timer is set / fires   agent/context.py TimerBook (staged, committed with the
                             handler's transition by loop.py); node/timers.py
                             TimerService.fire_due (removal + mailbox append, one txn)
    an event is recorded     node/eventlog.py  EventLog.emit (queued); its writer thread
                             commits the queue in one txn (store Txn.put_events), and so
                             does a reader first (commands.py ``events``)
    an agent sleeps / wakes  node/sessions.py  Sessions.sleep (release_child, stop "sleep",
                             one txn) / Sessions.wake (spawner.start_detached, adopt_child);
                             an append that finds it sleeping marks the wake in its own
                             txn (messaging/messenger.py append_routed)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from . import errors as errors
from ._types import AgentInfo as AgentInfo
from ._types import Down as Down
from ._types import DroppedFrames as DroppedFrames
from ._types import Escalate as Escalate
from ._types import Event as Event
from ._types import Exit as Exit
from ._types import Failure as Failure
from ._types import Limits as Limits
from ._types import NodeStatus as NodeStatus
from ._types import Reset as Reset
from ._types import Resume as Resume
from ._types import Skip as Skip
from ._types import Stop as Stop
from ._upgrades import UpgradeReport as UpgradeReport
from .agent.base import Agent as Agent
from .errors import AgentNotFound as AgentNotFound
from .errors import AlreadyRunning as AlreadyRunning
from .errors import BadMessage as BadMessage
from .errors import BeamishError as BeamishError
from .errors import CallTimeout as CallTimeout
from .errors import ConfigError as ConfigError
from .errors import MessageTooLarge as MessageTooLarge
from .errors import NodeAlreadyRunning as NodeAlreadyRunning
from .errors import NodeDown as NodeDown
from .errors import NodeNotRunning as NodeNotRunning
from .errors import RemoteError as RemoteError
from .errors import SpawnError as SpawnError
from .errors import StateError as StateError
from .errors import UpgradeFailed as UpgradeFailed
from .errors import UpgradeImportError as UpgradeImportError

if TYPE_CHECKING:
    from .agent.context import AgentContext as AgentContext
    from .client.api import AgentRef as AgentRef
    from .client.api import AsyncAgentRef as AsyncAgentRef
    from .client.api import AsyncNode as AsyncNode
    from .client.api import Node as Node
    from .client.api import connect as connect
    from .client.api import start_node as start_node
    from .client.remote import RemoteNode as RemoteNode
    from .cluster.frontdoor import TransportStatus as TransportStatus

# Imported on first use, not with the package: an agent's process (the zygote, and every
# process it forks) imports this package but neither the client nor the node, and each
# module it holds makes every fork slower and every agent's private memory larger
# (docs/memory.md). ``from beamish.runtime import Node`` works as before.
_LAZY: dict[str, str] = {
    "AgentContext": ".agent.context",
    "AgentRef": ".client.api",
    "AsyncAgentRef": ".client.api",
    "AsyncNode": ".client.api",
    "Node": ".client.api",
    "connect": ".client.api",
    "start_node": ".client.api",
    "RemoteNode": ".client.remote",
    "TransportStatus": ".cluster.frontdoor",
}


def __getattr__(name: str) -> Any:
    """Import a lazily re-exported public name (`_LAZY`) on its first use."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
