"""When the front door reads its authorized keys again (`keys_changed`, pure; one row per
rule), and `_Allowed` on real files: a key rewritten in place is seen."""

from __future__ import annotations

import os
import time

import pytest
import zmq

from beamish.runtime.cluster.frontdoor import (
    RACY_NS,
    KeyFileStamp,
    KeysStamp,
    _Allowed,
    keys_changed,
)
from beamish.runtime.cluster.keys import authorize, generate

T = 10**18  # a file system time, ns
OLD = T - 10 * RACY_NS
ALICE = KeyFileStamp("alice.key", 7, 41, OLD, OLD)
BASE = KeysStamp(OLD, (ALICE,))


def _with(**changes: int) -> KeysStamp:
    fields = {"name": ALICE.name, "inode": ALICE.inode, "size": ALICE.size,
              "mtime_ns": ALICE.mtime_ns, "ctime_ns": ALICE.ctime_ns, **changes}
    return KeysStamp(OLD, (KeyFileStamp(**fields),))  # type: ignore[arg-type]


@pytest.mark.parametrize("last, now, read_ns, changed", [
    (None, BASE, 0, True),                                      # never read
    (BASE, BASE, T, False),                                     # nothing moved, long ago
    (BASE, KeysStamp(OLD + 1, (ALICE,)), T, True),              # the dir changed
    (BASE, KeysStamp(OLD, ()), T, True),                        # a key removed
    (BASE, _with(inode=8), T, True),                            # replaced by a rename
    (BASE, _with(size=42), T, True),                            # rewritten, other size
    (BASE, _with(mtime_ns=OLD + 1), T, True),                   # rewritten in place
    (BASE, _with(ctime_ns=OLD + 1), T, True),                   # rewritten, mtime set back
    (BASE, BASE, OLD + RACY_NS, True),                          # read just after a change:
    (BASE, BASE, OLD + RACY_NS + 1, False),                     # ... within the racy window
    (KeysStamp(0, ()), KeysStamp(0, ()), T, False),             # no dir, still none
])
def test_keys_changed(last, now, read_ns, changed):
    assert keys_changed(last, now, read_ns) is changed


def _two_keys() -> tuple[str, str]:
    a, b = (zmq.curve_keypair()[0].decode() for _ in range(2))
    return a, b


def _rewrite(path: str, key: str) -> None:
    with open(path, "w") as fh:  # in place: same inode, same size, the dir untouched
        fh.write(key + "\n")


def test_a_key_rewritten_in_place_right_after_the_read_is_seen(tmp_path):
    d = str(tmp_path / "keys")
    generate(d)
    old, new = _two_keys()
    authorize(d, old, "alice")
    path = os.path.join(d, "authorized", "alice.key")
    allowed = _Allowed(d)
    assert allowed.keys == {old}
    dir_mtime = os.stat(allowed.dir).st_mtime_ns
    _rewrite(path, new)  # likely within the same tick of the file system's clock
    assert os.stat(allowed.dir).st_mtime_ns == dir_mtime
    allowed.refresh()
    assert allowed.keys == {new}


def test_a_key_rewritten_in_place_long_after_the_read_is_seen(tmp_path):
    d = str(tmp_path / "keys")
    generate(d)
    old, new = _two_keys()
    authorize(d, old, "alice")
    path = os.path.join(d, "authorized", "alice.key")
    hour_ago = time.time_ns() - 3600 * 10**9
    os.utime(path, ns=(hour_ago, hour_ago))  # written long ago, as a key in use is
    # A clock well ahead: nothing here is racy, only the stamps can tell a change.
    allowed = _Allowed(d, clock=lambda: time.time_ns() + 10 * RACY_NS)
    assert allowed.keys == {old}
    allowed.refresh()
    assert allowed.keys == {old}
    _rewrite(path, new)
    os.utime(path, ns=(hour_ago + 10**9, hour_ago + 10**9))  # e.g. copied with its time
    allowed.refresh()
    assert allowed.keys == {new}
