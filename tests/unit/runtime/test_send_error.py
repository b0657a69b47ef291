"""send_error(): the one mapping from the codec's errors to the public ones (pure)."""

from __future__ import annotations

import pytest

from beamish.mailbox import EncodeError, PayloadTooLarge
from beamish.runtime.errors import BadMessage, MessageTooLarge
from beamish.runtime.messaging.codec import send_error

TOO_LARGE = PayloadTooLarge(2000, 1000)
BAD = EncodeError("set", "a message to agent 'a'")


@pytest.mark.parametrize("exc, kwargs, cls, text", [
    # over the limit: MessageTooLarge names the agent it was for...
    (TOO_LARGE, {"target": "a"}, MessageTooLarge,
     "message to agent 'a' is 2000 bytes encoded, over max_message_bytes=1000"),
    # ... or what the value was
    (TOO_LARGE, {"what": "the spawn args"}, MessageTooLarge,
     "the spawn args is 2000 bytes encoded, over max_message_bytes=1000"),
    # not msgpack: BadMessage says the codec's own message...
    (BAD, {"target": "a"}, BadMessage, str(BAD)),
    # ... after the prefix, when the codec's message does not say what the value was
    (BAD, {"what": "the 'spawn' request", "prefix": "the 'spawn' request: "}, BadMessage,
     f"the 'spawn' request: {BAD}"),
])
def test_send_error_maps_each_codec_error_to_its_public_one(exc, kwargs, cls, text):
    err = send_error(exc, **kwargs)
    assert type(err) is cls
    assert str(err).startswith(text)


def test_message_too_large_carries_the_sizes():
    err = send_error(TOO_LARGE, target="a")
    assert isinstance(err, MessageTooLarge) and (err.size, err.limit) == (2000, 1000)
