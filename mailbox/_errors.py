"""Errors of the mailbox layer: bad frames, oversized payloads, timeouts."""

from __future__ import annotations


class MailboxError(Exception):
    """Root of every error raised by `beamish.mailbox`."""


class ProtocolError(MailboxError, ValueError):
    """A frame list that is not a valid beamish envelope (wrong count, version or kind)."""


class PayloadTooLarge(MailboxError, ValueError):
    """An encoded payload is larger than the configured `max_message_bytes`.

    Attributes:
        size: the encoded size in bytes.
        limit: the configured limit in bytes.
    """

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(
            f"message is {size} bytes encoded, over the limit of {limit} bytes "
            "(raise max_message_bytes or send a reference to the data instead)"
        )
        self.size = size
        self.limit = limit


class EncodeError(MailboxError, TypeError):
    """A value that msgpack cannot carry (beamish never pickles).

    Attributes:
        type_name: the name of the offending Python type.
    """

    def __init__(self, type_name: str, where: str) -> None:
        super().__init__(
            f"cannot serialize a value of type {type_name!r} in {where}: only None, bool, int, "
            "float, str, bytes, list, dict and pydantic models cross process boundaries"
        )
        self.type_name = type_name
