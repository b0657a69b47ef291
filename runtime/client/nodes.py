"""``beamish nodes``: a cluster's members as its PostgreSQL database records them (SPEC,
Cluster): each node's address, how long its lease has left by the database's clock,
whether it drains, the agents it reported at its last renewal and the shards it owns.

It reads the database directly (``--postgres DSN``, default ``$BEAMISH_POSTGRES``), so it
works while any node, or every node, is down. psycopg (the ``cluster`` extra) is
imported only when the command runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError

if TYPE_CHECKING:
    from ..store.postgres.cluster import Member

HEADER = ("NODE", "ADDRESS", "LEASE", "DRAINING", "AGENTS", "SHARDS", "INCARNATION")


def add_parser(sub: Any) -> None:
    """Register ``nodes`` on the CLI's subparsers ``sub``."""
    p = sub.add_parser("nodes", help="list a cluster's members (from its PostgreSQL)")
    p.add_argument("--postgres", metavar="DSN", default=os.environ.get("BEAMISH_POSTGRES"),
                   help="the cluster's database (default $BEAMISH_POSTGRES)")
    p.add_argument("--cluster", metavar="NAME", required=True, help="the cluster's name")
    p.add_argument("--json", action="store_true", help="one JSON object per member")


def lease_text(left: float) -> str:
    """How a lease's time left reads in the table (pure): ``4.2s left`` or ``expired
    3.1s ago``."""
    return f"{left:.1f}s left" if left > 0 else f"expired {abs(left):.1f}s ago"


def rows(members: Sequence[Member]) -> list[tuple[str, ...]]:
    """The table's rows for ``members`` (pure), in `HEADER`'s order."""
    return [(m.node, m.address, lease_text(m.lease_left), "yes" if m.draining else "no",
             str(m.agents), str(m.shards), str(m.incarnation)) for m in members]


def as_json(m: Member) -> dict[str, object]:
    """A member as ``--json`` prints it."""
    return {"node": m.node, "address": m.address, "alive": m.alive,
            "lease_left": round(m.lease_left, 3), "lease_expires": m.lease_expires.isoformat(),
            "joined": m.joined.isoformat(), "draining": m.draining, "agents": m.agents,
            "shards": m.shards, "incarnation": m.incarnation}


def run(args: argparse.Namespace) -> int:
    """Print the members of ``args.cluster``; 0, or raise a `BeamishError`."""
    if not args.postgres:
        raise ConfigError("beamish nodes needs the cluster's database: --postgres DSN or "
                          "$BEAMISH_POSTGRES")
    try:
        from ..store.postgres.cluster import read_members
    except ImportError:
        raise ConfigError("beamish nodes needs psycopg: pip install 'beamish[cluster]'") \
            from None
    members = read_members(args.postgres, args.cluster)
    if args.json:
        for m in members:
            print(json.dumps(as_json(m)))
        return 0
    if not members:
        print(f"cluster {args.cluster!r} has no members", file=sys.stderr)
        return 0
    table = [HEADER, *rows(members)]
    widths = [max(len(r[i]) for r in table) for i in range(len(HEADER))]
    for r in table:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return 0
