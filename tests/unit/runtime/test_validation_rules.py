"""The pure rules for names, timeouts, limits and values that must round-trip."""

from __future__ import annotations

import math

import pytest

from beamish.mailbox import EncodeError, PayloadTooLarge, unpack
from beamish.runtime import Limits
from beamish.runtime._validation import (
    NAME_MAX_BYTES,
    NotRoundTrip,
    bad_key_path,
    check_limits,
    check_lookup_name,
    check_name,
    check_timeout,
    name_problem,
    pack_roundtrip,
)
from beamish.runtime.errors import ConfigError
from beamish.runtime.node.config import parse_config


@pytest.mark.parametrize("name", ["c1", "worker-1", "chat.alice", "k:v", "ünïcode", "a" * 200,
                                  "\U0001F600" * 50, "a-b-", "_", "é" * 100])
def test_good_names(name):
    assert name_problem(name) is None and check_name(name) == name


@pytest.mark.parametrize("name, why", [
    ("", "empty"), ("a b", "whitespace"), ("a\tb", "whitespace"), ("a\nb", "whitespace"),
    ("a/b", "'/'"), ("x\x00", "control"), ("x\x1b[2J", "control"), ("\udc80", "surrogate"),
    ("\U0001F600" * 51, "204 bytes"), ("a" * 201, "201 bytes"), ("-x", "option"),
    ("\u200b", "unprintable"), ("a\u00a0b", "whitespace"), (3, "int"), (None, "NoneType"),
])
def test_bad_names_say_why_and_give_the_rule(name, why):
    with pytest.raises(ConfigError) as err:
        check_name(name, "supervisor")
    text = str(err.value)
    assert text.startswith("supervisor=") and why in text
    assert f"1 to {NAME_MAX_BYTES} bytes" in text


def test_lookup_names_accept_what_could_have_been_stored():
    assert check_lookup_name("a b") == "a b"
    for bad in ("", "\udc80", "x" * 512, 5):
        with pytest.raises(ConfigError, match="not a valid name"):
            check_lookup_name(bad)


@pytest.mark.parametrize("value", [0.001, 1, 5.0, 1e6])
def test_good_timeouts(value):
    assert check_timeout(value) == float(value)


@pytest.mark.parametrize("value", [math.nan, -1, 0, -0.0, math.inf, -math.inf, "5", True,
                                   None, [1]])
def test_bad_timeouts(value):
    with pytest.raises(ConfigError, match="wait="):
        check_timeout(value, "wait")


def test_zero_only_where_allowed():
    assert check_timeout(0, "seconds", allow_zero=True) == 0.0
    with pytest.raises(ConfigError, match=">= 0"):
        check_timeout(-0.5, "seconds", allow_zero=True)


def test_infinity_only_where_allowed():
    assert check_timeout(math.inf, allow_inf=True) == math.inf
    with pytest.raises(ConfigError, match="math.inf waits forever"):
        check_timeout(math.nan, allow_inf=True)


def test_limits_fields_are_checked():
    assert Limits(memory_mb=512, handler_timeout=0.5, cpu_seconds=10).handler_timeout == 0.5
    assert check_limits(None) == {}
    assert check_limits({"memory_mb": 64, "handler_timeout": None}) == {"memory_mb": 64.0}
    for bad in ({"memory_mb": "64"}, {"cpu_seconds": -1}, {"handler_timeout": math.nan},
                {"handler_timeout": math.inf}, {"memory_mb": False}, {"cpu_seconds": 2e9}):
        with pytest.raises(ConfigError, match="expected None or a finite number"):
            check_limits(bad)
    with pytest.raises(ConfigError, match="unknown field 'memory'"):
        check_limits({"memory": 1})
    with pytest.raises(ConfigError, match="expected a Limits or a dict"):
        check_limits("fast")


def test_config_file_limits_refuse_nan_and_inf():
    def agent(value: float) -> dict:
        return {"agent": [{"name": "a", "class": "m:C", "limits": {"handler_timeout": value}}]}
    assert parse_config(agent(2.5)).agent[0].limits.handler_timeout == 2.5
    for bad in (math.nan, math.inf, -1, 0, 1e12):
        with pytest.raises(ConfigError, match="handler_timeout"):
            parse_config(agent(bad))


@pytest.mark.parametrize("value", [{"a": 1}, {1: "x", 2.5: None, b"k": True, None: 0},
                                   [1, (2, 3), {"n": {"m": []}}], "text", None])
def test_values_that_round_trip_pack_as_before(value):
    assert unpack(pack_roundtrip(value, where="x")) is not None or value is None


@pytest.mark.parametrize("value, path, type_name", [
    ({(1, 2): 3}, "[(1, 2)]", "tuple"),
    ({"a": [0, {"b": {frozenset({1}): 1}}]}, "['a'][1]['b'][frozenset({1})]", "frozenset"),
    ([{"k": {("x",): 1}}], "[0]['k'][('x',)]", "tuple"),
])
def test_values_that_would_not_decode_are_refused_with_their_path(value, path, type_name):
    assert bad_key_path(value) == (path, type_name)
    with pytest.raises(NotRoundTrip) as err:
        pack_roundtrip(value, where="the state of agent 'c1'")
    assert isinstance(err.value, EncodeError)
    text = str(err.value)
    assert "the state of agent 'c1'" in text and path in text and type_name in text


def test_pack_roundtrip_keeps_the_codec_errors():
    with pytest.raises(EncodeError):
        pack_roundtrip(object(), where="x")
    with pytest.raises(PayloadTooLarge):
        pack_roundtrip(b"x" * 100, where="x", limit=10)


def test_config_file_names_follow_the_rule():
    good = {"supervisor": [{"name": "workers"}],
            "agent": [{"name": "w.1", "class": "m:C", "supervisor": "workers"}]}
    assert parse_config(good).agent[0].name == "w.1"
    for bad in ({"supervisor": [{"name": "a/b"}]},
                {"agent": [{"name": "has space", "class": "m:C"}]}):
        with pytest.raises(ConfigError, match="not a valid name"):
            parse_config(bad)


def test_mailbox_records_are_opened_or_refused_never_crash():
    import msgpack

    from beamish.mailbox import pack
    from beamish.runtime.agent.loop import _is_call
    from beamish.runtime.agent.loop import _open_record as _open_checked
    from beamish.runtime.store.records import Message

    def _open_record(raw):
        record, msg = _open_checked(Message.from_wire(raw))
        return record.kind, msg
    call = {"k": "call", "p": pack("hi"), "id": b"x" * 16, "r": "/tmp/inbox", "d": 1.0}
    assert _open_record(call) == ("call", "hi") and _is_call(Message.from_wire(call))
    assert _open_record({"k": "cast", "p": pack([1])}) == ("cast", [1])
    for bad in (None, [], {"k": "cast"}, {"k": "nope", "p": b"\x90"}, {"k": "cast", "p": "x"},
                {"k": "call", "p": pack(1)}, {"k": "cast", "p": msgpack.packb({(1, 2): 3})},
                {"k": "cast", "p": b"\xc1"}):
        with pytest.raises(ValueError):
            _open_record(bad)
    assert not _is_call(Message.from_wire({"k": "call", "p": b"", "id": "str-id", "r": "x",
                                           "d": 1.0}))
