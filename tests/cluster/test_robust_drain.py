"""A drain that no other node can take the shards of (here: the only node of its
cluster) ends once it has been stalled for `STALL_GIVE_UP_S`, saying why, instead of
waiting out its timeout: `DrainIncomplete` with ``stalled``, and the node stops all the
same (``beamish node drain``'s exit code 1)."""

from __future__ import annotations

import os

import pytest

from beamish.runtime import start_node
from beamish.runtime.cluster.drain import DrainPhase, DrainStatus
from beamish.runtime.errors import DrainIncomplete
from tests.cluster.conftest import write_config
from tests.conftest import shutdown_quietly, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.cluster_long]  # ~10 s of drain


def test_a_drain_with_no_taker_ends_before_its_timeout(pg_dsn: str, node_dir: str) -> None:
    config = write_config(os.path.dirname(node_dir), f'[cluster]\nname = "t"\n'
                          f'node = "n1"\npostgres = "{pg_dsn}"\n')
    node = start_node(node_dir, config=config)
    try:
        wait_until(lambda: (st := node.cluster()) is not None and len(st.shards) > 0,
                   timeout=30, what="n1 holding shards")
        seen: list[DrainStatus] = []
        with pytest.raises(DrainIncomplete) as raised:
            node.drain(timeout=600, on_progress=seen.append)
    finally:
        shutdown_quietly(node)
    err = raised.value
    assert err.stalled and err.node == "n1" and err.shards_left > 0
    assert "no other node alive and not draining could take" in str(err)
    final = seen[-1]
    assert final.phase is DrainPhase.INCOMPLETE and final.stalled
    assert final.elapsed < final.timeout  # it did not wait out its 600 s
    assert any(st.stalled and not st.final for st in seen)  # said so while it waited
    print(f"\nstalled drain ended after {final.elapsed:.1f} s of its {final.timeout:g} s")
