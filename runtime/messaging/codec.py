"""The public error for a value that cannot be sent: the one mapping from the codec's
errors (`beamish.mailbox`'s `PayloadTooLarge`, `EncodeError`) to `MessageTooLarge` and
`BadMessage`, shared by messages (`messenger`), spawn args (`spawnargs`) and control
requests (`control`)."""

from __future__ import annotations

from beamish.mailbox import EncodeError, PayloadTooLarge

from ..errors import BadMessage, MessageTooLarge

CODEC_ERRORS = (PayloadTooLarge, EncodeError)
"""What `pack` (and `pack_roundtrip`) raise for a value that cannot be sent: catch these and
raise `send_error` of them."""


def send_error(exc: PayloadTooLarge | EncodeError, *, target: str = "", what: str = "",
               prefix: str = "") -> MessageTooLarge | BadMessage:
    """The public error for ``exc``: `MessageTooLarge` for a value over the limit (naming
    ``target``, the agent it was for, or ``what`` it was), else `BadMessage` with the
    codec's own message, after ``prefix`` when the codec's message does not say what the
    value was."""
    if isinstance(exc, PayloadTooLarge):
        return MessageTooLarge(exc.size, exc.limit, target, what)
    return BadMessage(f"{prefix}{exc}")
