"""The round loop of a cluster node's worker threads (``node/cluster_node.py``'s re-check
of its shards, ``node/cluster_links.py``'s signals): wait for a kick or ``interval``,
run one round, and survive what a round raises (logged, tried again after ``interval``),
until told to stop.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from ..errors import StoreError

log = logging.getLogger("beamish.cluster")


def run_rounds(stop: threading.Event, kick: threading.Event, interval: float,
               round_fn: Callable[[], None], name: str) -> None:
    """Run ``round_fn`` each time ``kick`` is set, and at least every ``interval``
    seconds, until ``stop`` is set (checked after each wait: a stop sets ``kick`` too, to
    end the wait at once). A `StoreError` (PostgreSQL unreachable, a commit refused) is
    logged as a warning and any other exception with its traceback (a bug must not end
    the worker while its node's lease lives on); either way the next round comes after
    ``interval``. ``name`` names the worker in the log."""
    while not stop.is_set():
        kick.wait(interval)
        kick.clear()
        if stop.is_set():
            return
        try:
            round_fn()
        except StoreError as exc:
            log.warning("%s: %s (retrying)", name, exc)
            stop.wait(interval)
        except Exception:  # noqa: BLE001 - a bug must not end the worker: it is logged
            log.exception("%s: its round failed (retrying)", name)
            stop.wait(interval)
