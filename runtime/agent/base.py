"""The `Agent` base class: the callbacks a user writes, gen_server style."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, ClassVar

from .._types import Escalate, Failure, Reset, Resume, Skip, Stop, UserData

if TYPE_CHECKING:
    from pydantic import BaseModel

    from .context import AgentContext

# What `Agent.recover` returns (an ``async def recover`` returns an awaitable of it).
RecoverChoice = Resume | Skip | Reset | Stop | Escalate


class Agent:
    """Base class of every beamish agent. One message at a time, in mailbox order.

    Subclass it and override the callbacks; any of them may be ``async def``. The agent
    runs in its own OS process, forked from the node's zygote; ``self.ctx`` (an
    `AgentContext`) lets a handler call, cast, spawn and set timers.

    Class attributes:
        version: bump it when the state's shape changes; `code_change` migrates.
        State: an optional pydantic model the state is validated into on load.
        trap_exits: receive `Exit` in `handle_info` instead of dying with a linked agent.
        max_attempts: no message is attempted more than this many times.
        CallMessage, CastMessage: optional pydantic models; a call or cast that does not
            validate is refused (the caller gets `RemoteError` of type ValidationError, a
            cast goes to the dead letters) and the agent does not crash. The handler still
            receives the plain data.

    A handler that returns None as the new state while the state is not None (a
    forgotten ``return``) crashes the agent with a ``TypeError`` (OTP's
    bad_return_value); the committed state is kept. A state that is None may stay None.
    """

    version: ClassVar[int] = 1
    State: ClassVar[type[BaseModel] | None] = None
    trap_exits: ClassVar[bool] = False
    max_attempts: ClassVar[int] = 3
    CallMessage: ClassVar[type[BaseModel] | None] = None
    CastMessage: ClassVar[type[BaseModel] | None] = None
    ctx: AgentContext

    def init(self, args: UserData) -> Any:
        """Return the initial state. Runs only when no committed state exists.

        Args:
            args: the ``args`` given to spawn.
        """
        return {}

    def handle_call(self, msg: Any, state: Any) -> Any:
        """Answer a request: return ``(reply, new_state)`` (or `Stop`)."""
        raise NotImplementedError(f"{type(self).__name__} does not handle calls")

    def handle_cast(self, msg: Any, state: Any) -> Any:
        """Handle a fire-and-forget message: return the new state (or `Stop`)."""
        return state

    def handle_info(self, msg: Any, state: Any) -> Any:
        """Handle a timer, `Down` or `Exit` message: return the new state (or `Stop`)."""
        return state

    def recover(self, failure: Failure, state: Any) -> RecoverChoice | Awaitable[RecoverChoice]:
        """Choose how to go on after a failure, in the freshly restarted process.

        Args:
            failure: what happened (kind, exception, in-flight message, attempt).
            state: the last committed state.

        Returns:
            `Resume`, `Skip`, `Reset`, `Stop` or `Escalate`. The default skips the message
            when the handler raised (a Python exception is usually deterministic) and
            resumes it for every other kind (a signal, OOM, timeout or kill may pass).
        """
        if failure.kind == "exception":
            return Skip(state)
        return Resume(state)

    def code_change(self, old_version: int, state: Any) -> Any:
        """Migrate ``state`` committed by class version ``old_version`` to this version."""
        return state

    def terminate(self, reason: str, state: Any) -> None:
        """Clean up before an orderly stop (``reason`` is "normal" or "shutdown")."""
