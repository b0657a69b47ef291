"""Helpers shared by the supervisor tests (a uniquely named module: every test folder
may have a conftest.py, so tests never import from "conftest")."""

from __future__ import annotations

WAIT = 2.0  # real seconds any wait may take before the test fails instead of hanging


class Recorder:
    """Collects on_event calls as (kind, name, supervisor, reason) tuples."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, str, str]] = []

    def __call__(self, kind: str, name: str, supervisor: str, reason: str) -> None:
        self.events.append((str(kind), name, supervisor, reason))

    def kinds(self, name: str | None = None) -> list[str]:
        return [k for k, n, _, _ in self.events if name is None or n == name]
