"""Errors raised by ``beamish.supervisor``.

OTP answers supervisor calls with named values (``{error, already_present}``,
``{error, running}``, ``{error, not_found}``); beamish raises one class per value,
all under :class:`SupervisorError`, each also subclassing the closest builtin so
callers can catch either.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AlreadyPresent",
    "AlreadyStarted",
    "InvalidSpec",
    "NotFound",
    "NotRunning",
    "Running",
    "StartFailed",
    "SupervisorError",
]


class SupervisorError(Exception):
    """Root of every error ``beamish.supervisor`` raises."""


class InvalidSpec(SupervisorError, ValueError):
    """A child or supervisor spec is malformed.

    The message names the field, the value given and what was expected, e.g.
    ``invalid restart: 'forever' (expected one of permanent, transient, temporary)``.

    Attributes:
        field: The offending field's name (``"restart"``, ``"children[2].id"``...).
        value: The value that was given.
        expected: A short description of what the field accepts.
    """

    def __init__(self, field: str, value: Any, expected: str) -> None:
        """Build the error.

        Args:
            field: The offending field's name.
            value: The value that was given.
            expected: What the field accepts.
        """
        self.field = field
        self.value = value
        self.expected = expected
        super().__init__(f"invalid {field}: {value!r} (expected {expected})")


class AlreadyPresent(SupervisorError):
    """A child with this id is already known to the supervisor (OTP ``already_present``).

    Attributes:
        id: The child id.
    """

    def __init__(self, id: str, message: str | None = None) -> None:
        """Build the error.

        Args:
            id: The child id.
            message: Overrides the default message.
        """
        self.id = id
        super().__init__(message or f"child {id!r} is already present")


class AlreadyStarted(AlreadyPresent):
    """A child with this id is already running (OTP ``{already_started, Pid}``)."""

    def __init__(self, id: str) -> None:
        """Build the error.

        Args:
            id: The child id.
        """
        super().__init__(id, f"child {id!r} is already started")


class NotFound(SupervisorError, LookupError):
    """No child with this id (OTP ``not_found``).

    Attributes:
        id: The child id that was looked up.
    """

    def __init__(self, id: str, message: str | None = None) -> None:
        """Build the error.

        Args:
            id: The child id.
            message: Overrides the default message.
        """
        self.id = id
        super().__init__(message or f"no child {id!r}")


class Running(SupervisorError):
    """The child is running or about to restart, so it cannot be restarted by hand
    (OTP ``running`` / ``restarting``).

    Attributes:
        id: The child id.
    """

    def __init__(self, id: str, status: str = "running") -> None:
        """Build the error.

        Args:
            id: The child id.
            status: The child's current status, for the message.
        """
        self.id = id
        self.status = status
        super().__init__(f"child {id!r} is {status}")


class ChildNotRunning(SupervisorError):
    """Only a running child can be released (beamish: a session falls asleep only while
    it runs); this one is starting, restarting, waiting out a backoff, failed or stopped.

    Attributes:
        id: The child's id.
        status: Its status.
    """

    def __init__(self, id: str, status: str) -> None:
        """Build the error.

        Args:
            id: The child's id.
            status: Its status.
        """
        self.id = id
        self.status = status
        super().__init__(f"child {id!r} is {status}, not running: only a running child "
                         "can be released")


class NotRunning(SupervisorError):
    """The supervisor is not running: not started yet, shut down, or stopped after
    reaching its restart intensity (and waiting for its parent to restart it).

    Attributes:
        supervisor: The supervisor's id.
    """

    def __init__(self, supervisor: str) -> None:
        """Build the error.

        Args:
            supervisor: The supervisor's id.
        """
        self.supervisor = supervisor
        super().__init__(f"supervisor {supervisor!r} is not running")


class StartFailed(SupervisorError):
    """Starting a child failed (OTP ``{error, Reason}`` from a start function).

    A :class:`~beamish.supervisor.Spawner` raises it from ``start_child``; the
    supervisor raises it from ``add_child``/``restart_child``/``start``.

    Attributes:
        reason: Why the start failed, as text.
        id: The child that failed to start, when known.
    """

    def __init__(self, reason: str, id: str | None = None) -> None:
        """Build the error.

        Args:
            reason: Why the start failed.
            id: The child that failed to start, when known.
        """
        self.reason = reason
        self.id = id
        super().__init__(f"child {id!r} failed to start: {reason}" if id else reason)
