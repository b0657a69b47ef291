"""The pure rules of CURVE keys and tcp:// addresses, one table each."""

from __future__ import annotations

import pytest
import zmq

from beamish.runtime.cluster.address import TcpAddress, tcp_address
from beamish.runtime.cluster.keys import (
    AuthorizedKey,
    check_key,
    check_key_name,
    default_key_name,
    pick_server_key,
)
from beamish.runtime.errors import ConfigError

# Real public keys, derived from fixed secrets: the test ids name them, and they must be
# the same in every process collecting them (pytest-xdist's workers compare their lists).
GOOD = zmq.curve_public(b"9Tq+qY2<7VQd@1#!<U@Nq<(pN+l?8Yo8&tfm<Ymk").decode()
OTHER = zmq.curve_public(b"+La7PvQzlVl@^MXq7uw{VXjH).*tmoYSO>gs?2LZ").decode()


@pytest.mark.parametrize("text, ok", [
    (GOOD, True),
    (f"  {GOOD}\n", True),                     # a file's line: stripped
    (GOOD[:-1], False),                        # 39 characters
    (GOOD + "0", False),                       # 41
    ("", False),
    ("~" + GOOD[1:], False),                   # "~" is not Z85
    ("#" * 40, False),                         # Z85 characters, but each group overflows
    ("0" * 40, True),                          # the zero key is valid Z85
])
def test_check_key(text, ok):
    if ok:
        assert check_key(text) == text.strip()
    else:
        with pytest.raises(ConfigError, match="Z85"):
            check_key(text)


def test_check_key_refuses_what_is_not_a_string():
    with pytest.raises(ConfigError, match="not bytes"):
        check_key(GOOD.encode())  # type: ignore[arg-type]


@pytest.mark.parametrize("name, ok", [
    ("alice", True), ("node-1.prod", True), ("_x", True), ("a" * 64, True),
    ("a" * 65, False), ("", False), (".hidden", False), ("-opt", False),
    ("a/b", False), ("a b", False), ("é", False),
])
def test_check_key_name(name, ok):
    if ok:
        assert check_key_name(name) == name
    else:
        with pytest.raises(ConfigError, match="key name"):
            check_key_name(name)


def test_default_key_name_is_a_valid_name_and_stable():
    assert check_key_name(default_key_name(GOOD)) == default_key_name(GOOD)
    assert default_key_name(GOOD) != default_key_name(OTHER)


A, B = AuthorizedKey("a", GOOD), AuthorizedKey("b", OTHER)


@pytest.mark.parametrize("known, choose, expect", [
    ([A], None, GOOD),                 # the only one
    ([A, B], "b", OTHER),              # chosen by name
    ([A, B], GOOD, GOOD),              # chosen by key
    ([], OTHER, OTHER),                # a key not in the dir, given outright
    ([], None, "holds no server key"),
    ([A, B], None, "holds 2 keys"),
    ([A], "c", "not a key name"),
])
def test_pick_server_key(known, choose, expect):
    if expect in (GOOD, OTHER):
        assert pick_server_key(known, choose, "/k") == expect
    else:
        with pytest.raises(ConfigError, match=expect):
            pick_server_key(known, choose, "/k")


@pytest.mark.parametrize("text, expect", [
    ("tcp://127.0.0.1:7700", TcpAddress("127.0.0.1", 7700)),
    ("tcp://0.0.0.0:1", TcpAddress("0.0.0.0", 1)),
    ("tcp://*:65535", TcpAddress("*", 65535)),
    ("tcp://node-1.internal:7700", TcpAddress("node-1.internal", 7700)),
    ("tcp://[::1]:7700", TcpAddress("::1", 7700)),
    ("127.0.0.1:7700", "not a tcp:// address"),
    ("ipc:///tmp/x", "not a tcp:// address"),
    ("tcp://127.0.0.1", "no HOST:PORT"),
    ("tcp://:7700", "no HOST:PORT"),
    ("tcp://::1:7700", "takes brackets"),
    ("tcp://[nope]:7700", "not an IPv6 address"),
    ("tcp://bad_host:7700", "not a host name"),
    ("tcp://127.0.0.1:0", "not a number from 1"),
    ("tcp://127.0.0.1:65536", "not a number from 1"),
    ("tcp://127.0.0.1:http", "not a number from 1"),
])
def test_tcp_address(text, expect):
    if isinstance(expect, TcpAddress):
        assert tcp_address(text) == expect
        assert str(expect) == text
    else:
        with pytest.raises(ValueError, match=expect):
            tcp_address(text, "cluster.listen")
