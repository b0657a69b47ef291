"""Exit reasons: values describing why a child stopped (never exceptions)."""

from __future__ import annotations

import enum
import signal
from dataclasses import dataclass

__all__ = ["ExitKind", "ExitReason"]


class ExitKind(enum.StrEnum):
    """The three kinds of exit OTP's restart rules distinguish."""

    NORMAL = "normal"
    """The child finished on its own (``Stop("normal")``)."""
    SHUTDOWN = "shutdown"
    """The child was asked to stop and did (``node.stop``, ``Stop("shutdown")``)."""
    ABNORMAL = "abnormal"
    """Anything else: a crash, a kill, ``Stop`` with another reason."""


@dataclass(frozen=True, slots=True)
class ExitReason:
    """Why a child exited.

    Attributes:
        kind: normal, shutdown or abnormal.
        detail: Free text (``"killed by SIGKILL"``, ``"exit code 1"``, an exception name).
    """

    kind: ExitKind
    detail: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.kind, ExitKind):
            object.__setattr__(self, "kind", ExitKind(self.kind))

    @property
    def is_normal(self) -> bool:
        """True for ``normal`` and ``shutdown``: a transient child is not restarted."""
        return self.kind is not ExitKind.ABNORMAL

    @classmethod
    def normal(cls, detail: str = "") -> ExitReason:
        """An exit of kind ``normal``.

        Args:
            detail: Free text.

        Returns:
            The reason.
        """
        return cls(ExitKind.NORMAL, detail)

    @classmethod
    def shutdown(cls, detail: str = "") -> ExitReason:
        """An exit of kind ``shutdown``.

        Args:
            detail: Free text.

        Returns:
            The reason.
        """
        return cls(ExitKind.SHUTDOWN, detail)

    @classmethod
    def abnormal(cls, detail: str = "") -> ExitReason:
        """An exit of kind ``abnormal``.

        Args:
            detail: Free text.

        Returns:
            The reason.
        """
        return cls(ExitKind.ABNORMAL, detail)

    @classmethod
    def from_returncode(cls, returncode: int) -> ExitReason:
        """Classify a ``Popen``-style return code: ``-signum`` means signalled.

        A process exit status alone cannot say "shutdown": the runtime knows when it
        asked a child to stop and should build that reason itself.

        Args:
            returncode: 0 for success, ``N > 0`` for ``exit(N)``, ``-signum`` for a signal.

        Returns:
            ``normal`` for 0, otherwise ``abnormal`` with the code or signal name.
        """
        if returncode == 0:
            return cls.normal("exit code 0")
        if returncode < 0:
            try:
                name = signal.Signals(-returncode).name
            except ValueError:
                name = f"signal {-returncode}"
            return cls.abnormal(f"killed by {name}")
        return cls.abnormal(f"exit code {returncode}")

    def __str__(self) -> str:
        return f"{self.kind.value}: {self.detail}" if self.detail else self.kind.value
