"""Networks for the cluster fault tests: each node in its own network namespace, or, on
machines without namespaces, on its own loopback address.

* `Netns`: ``count`` namespaces, each with a veth pair whose outer end is in a bridge in
  the root namespace. The bridge holds ``10.231.N.1/24`` (N: a subnet no interface uses
  yet) and node ``i`` holds ``10.231.N.(10+i)``: private addresses this harness creates,
  traffic that never leaves the machine. ``cut(i)`` sets node ``i``'s outer veth down (a
  pulled cable: its packets go nowhere, both ways); ``restore(i)`` sets it up again.
* `Loopback`: node ``i`` is ``127.0.0.(10+i)``, in the root namespace, and reaches the
  database at ``127.0.1.(10+i)``; a cut is emulated by an nftables table that drops the
  packets from and to both (skipped, with the reason, only where nft is missing).

``db_listen`` and ``trust`` are what the PostgreSQL server must listen on and let in
for the nodes to reach it (``scripts/pgserver.py``'s ``listen``/``trust``).

Every name starts with the test session's mark (``bm`` + 6 hex digits of
``BEAMISH_TEST_SESSION``), so `leftovers` finds what this session made and nothing else,
and `teardown` removes every namespace, veth, bridge and nft table the harness made,
even after a failure half-way through `up`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass

MARK = "bm" + os.environ.get("BEAMISH_TEST_SESSION", "000000")[:6]


class NetUnavailable(RuntimeError):
    """This machine cannot build the network asked for; the message says why."""


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and out.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed: {out.stderr.strip()}")
    return out


def netns_unavailable() -> str | None:
    """Why network namespaces cannot be used here, or None if they can."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "iproute2 (ip) is not installed"
    probe = f"{MARK}probe"
    made = _ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"ip netns add fails here: {made.stderr.strip()}"
    _ip("netns", "del", probe, check=False)
    return None


def cut_unavailable() -> str | None:
    """Why a loopback cut cannot be emulated here, or None if it can."""
    if os.geteuid() != 0:
        return "a loopback cut needs root (nftables)"
    if shutil.which("nft") is None:
        return "nft (nftables) is not installed: a loopback cut cannot be emulated"
    return None


def leftovers() -> list[str]:
    """Every namespace, link and nft table of this session that exists now."""
    found: list[str] = []
    if shutil.which("ip"):
        for line in _ip("netns", "list", check=False).stdout.splitlines():
            if line.split() and line.split()[0].startswith(MARK):
                found.append(f"netns {line.split()[0]}")
        for line in _ip("-o", "link", "show", check=False).stdout.splitlines():
            name = line.split(":")[1].strip().split("@")[0] if ":" in line else ""
            if name.startswith(MARK):
                found.append(f"link {name}")
    if shutil.which("nft") and os.geteuid() == 0:
        tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True,
                                timeout=30).stdout
        found += [f"nft {line}" for line in tables.splitlines() if MARK in line]
    return found


def _free_subnet() -> int:
    used = _ip("-o", "-4", "addr", "show", check=False).stdout
    start = int(MARK[2:6], 16) % 240 + 10
    for k in range(240):
        n = (start + k) % 240 + 10
        if f"10.231.{n}." not in used:
            return n
    raise NetUnavailable("every 10.231.N.0/24 subnet is in use on this machine")


@dataclass(frozen=True, slots=True)
class NetNode:
    """Node ``index`` of a harness: its address, the address it reaches the database
    (PostgreSQL) at, and its namespace (None: loopback)."""

    index: int
    address: str
    db_address: str
    netns: str | None

    def argv(self, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside this node's network (``ip netns exec``)."""
        return ["ip", "netns", "exec", self.netns, *argv] if self.netns else list(argv)


class Netns:
    """``count`` network namespaces in a bridge (module docstring)."""

    kind = "netns"

    def __init__(self, count: int) -> None:
        self.count = count
        self.subnet = _free_subnet()
        self.bridge = f"{MARK}br"
        self.host_address = f"10.231.{self.subnet}.1"
        self.cidr = f"10.231.{self.subnet}.0/24"
        self.nodes = [NetNode(i, f"10.231.{self.subnet}.{10 + i}", self.host_address,
                              f"{MARK}n{i}") for i in range(count)]

    @property
    def db_listen(self) -> tuple[str, ...]:
        """The addresses the database listens on for these nodes."""
        return (self.host_address,)

    def _outer(self, i: int) -> str:
        return f"{MARK}h{i}"

    def up(self) -> Netns:
        """Create the bridge, the namespaces and their links; tear down what was made if
        a step fails."""
        try:
            _ip("link", "add", self.bridge, "type", "bridge")
            _ip("addr", "add", f"{self.host_address}/24", "dev", self.bridge)
            _ip("link", "set", self.bridge, "up")
            for node in self.nodes:
                assert node.netns is not None
                inner = f"{MARK}c{node.index}"
                _ip("netns", "add", node.netns)
                _ip("link", "add", self._outer(node.index), "type", "veth", "peer", "name",
                    inner)
                _ip("link", "set", inner, "netns", node.netns)
                _ip("link", "set", self._outer(node.index), "master", self.bridge)
                _ip("link", "set", self._outer(node.index), "up")
                _ip("-n", node.netns, "addr", "add", f"{node.address}/24", "dev", inner)
                _ip("-n", node.netns, "link", "set", inner, "up")
                _ip("-n", node.netns, "link", "set", "lo", "up")
        except BaseException:
            self.teardown()
            raise
        return self

    def cut(self, i: int) -> None:
        """Pull node ``i``'s cable: its outer veth goes down."""
        _ip("link", "set", self._outer(i), "down")

    def restore(self, i: int) -> None:
        """Plug node ``i``'s cable back."""
        _ip("link", "set", self._outer(i), "up")

    def teardown(self) -> list[str]:
        """Remove every namespace (and so its inner veth), outer veth and the bridge;
        return what could not be removed."""
        errors = []
        for node in self.nodes:
            for args in (("link", "del", self._outer(node.index)),
                         ("netns", "del", str(node.netns))):
                out = _ip(*args, check=False)
                if out.returncode != 0 and "Cannot find" not in out.stderr \
                        and "No such" not in out.stderr:
                    errors.append(f"ip {' '.join(args)}: {out.stderr.strip()}")
        out = _ip("link", "del", self.bridge, check=False)
        if out.returncode != 0 and "Cannot find" not in out.stderr:
            errors.append(f"ip link del {self.bridge}: {out.stderr.strip()}")
        return errors


class Loopback:
    """``count`` nodes on loopback addresses; a cut drops their packets with nftables."""

    kind = "loopback"

    def __init__(self, count: int) -> None:
        self.count = count
        self.host_address = "127.0.0.1"
        self.cidr = "127.0.0.0/8"
        self.table = f"{MARK}lo"
        # Each node reaches the database at an address of its own, so a cut covers it.
        self.nodes = [NetNode(i, f"127.0.0.{10 + i}", f"127.0.1.{10 + i}", None)
                      for i in range(count)]
        self._cut: set[int] = set()

    @property
    def db_listen(self) -> tuple[str, ...]:
        """The addresses the database listens on for these nodes."""
        return tuple(n.db_address for n in self.nodes)

    def up(self) -> Loopback:
        """Nothing to create: every 127.0.0.0/8 address is local on Linux."""
        return self

    def cut(self, i: int) -> None:
        """Drop every packet from or to node ``i``'s address (skips the test if nft is
        missing)."""
        reason = cut_unavailable()
        if reason:
            import pytest
            pytest.skip(reason)
        if not self._cut:
            self._nft(f"add table inet {self.table}")
            self._nft(f"add chain inet {self.table} out "
                      "{ type filter hook output priority 0 ; policy accept ; }")
        for addr in (self.nodes[i].address, self.nodes[i].db_address):
            for way in ("saddr", "daddr"):
                self._nft(f"add rule inet {self.table} out ip {way} {addr} drop "
                          f"comment \"n{i}\"")
        self._cut.add(i)

    def restore(self, i: int) -> None:
        """Stop dropping node ``i``'s packets."""
        if i not in self._cut:
            return
        self._cut.discard(i)
        listing = subprocess.run(["nft", "-a", "list", "chain", "inet", self.table, "out"],
                                 capture_output=True, text=True, timeout=30).stdout
        for line in listing.splitlines():
            if f'comment "n{i}"' in line and "# handle" in line:
                handle = line.rsplit("# handle", 1)[1].strip()
                self._nft(f"delete rule inet {self.table} out handle {handle}")

    def teardown(self) -> list[str]:
        """Remove the nft table, if a cut made it; return what could not be removed."""
        if shutil.which("nft") is None or os.geteuid() != 0:
            return []
        self._cut.clear()
        out = subprocess.run(["nft", "delete", "table", "inet", self.table],
                             capture_output=True, text=True, timeout=30)
        if out.returncode != 0 and "No such file" not in out.stderr:
            return [f"nft delete table: {out.stderr.strip()}"]
        return []

    def _nft(self, command: str) -> None:
        out = subprocess.run(["nft", command], capture_output=True, text=True, timeout=30)
        if out.returncode != 0:
            raise RuntimeError(f"nft {command} failed: {out.stderr.strip()}")


def python_in(node: NetNode, code: str, timeout: float = 30
              ) -> subprocess.CompletedProcess[str]:
    """Run ``code`` with this interpreter inside ``node``'s network."""
    return subprocess.run(node.argv([sys.executable, "-c", code]), capture_output=True,
                          text=True, timeout=timeout)
