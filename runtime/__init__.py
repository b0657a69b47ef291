"""beamish.runtime: agents in their own OS processes, supervised, with durable state.

Layering: ``beamish.mailbox`` (wire format, sockets) and ``beamish.supervisor`` (specs and
pure restart decisions) are leaves; this package wires them to the OS (zygote, node
daemon, agent loop, LMDB store) and is the public facade.
"""

from . import errors as errors
from ._agent import Agent as Agent
from ._client import AgentRef as AgentRef
from ._client import AsyncNode as AsyncNode
from ._client import Node as Node
from ._client import connect as connect
from ._client import start_node as start_node
from ._context import AgentContext as AgentContext
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
from .errors import AgentNotFound as AgentNotFound
from .errors import AlreadyRunning as AlreadyRunning
from .errors import BadMessage as BadMessage
from .errors import BeamishError as BeamishError
from .errors import CallTimeout as CallTimeout
from .errors import ConfigError as ConfigError
from .errors import MessageTooLarge as MessageTooLarge
from .errors import NodeAlreadyRunning as NodeAlreadyRunning
from .errors import NodeNotRunning as NodeNotRunning
from .errors import RemoteError as RemoteError
from .errors import SpawnError as SpawnError
from .errors import StateError as StateError
