"""A hostile agent module: importing it segfaults (reads address 0).

Importing it is the fault, so it is a module of its own; the class is never reached.
"""

from __future__ import annotations

import ctypes

ctypes.string_at(0)

from beamish.runtime import Agent  # noqa: E402


class Never(Agent):
    """Never defined: the import crashes first."""
