"""A hostile agent module: importing it ends the process (``os._exit(7)``).

Importing it is the fault, so it is a module of its own; the class is never reached.
"""

from __future__ import annotations

import os

os._exit(7)

from beamish.runtime import Agent  # noqa: E402


class Never(Agent):
    """Never defined: the import exits first."""
