"""beamish.mailbox: the wire format and the ZeroMQ sockets (a leaf: stdlib, msgpack, pyzmq).

ZeroMQ is transport only. The durable mailbox lives in LMDB (see ``beamish.runtime``);
the sockets here carry control requests and doorbells, never the only copy of a message.
"""

from ._aio import AsyncInbox as AsyncInbox
from ._aio import AsyncReplies as AsyncReplies
from ._aio import AsyncRequester as AsyncRequester
from ._errors import EncodeError as EncodeError
from ._errors import MailboxError as MailboxError
from ._errors import PayloadTooLarge as PayloadTooLarge
from ._errors import ProtocolError as ProtocolError
from ._protocol import DEFAULT_MAX_MESSAGE_BYTES as DEFAULT_MAX_MESSAGE_BYTES
from ._protocol import PROTOCOL_VERSION as PROTOCOL_VERSION
from ._protocol import Envelope as Envelope
from ._protocol import Kind as Kind
from ._protocol import decode as decode
from ._protocol import encode as encode
from ._protocol import encode_ring as encode_ring
from ._protocol import new_msg_id as new_msg_id
from ._protocol import pack as pack
from ._protocol import unpack as unpack
from ._socket import MAX_IPC_PATH as MAX_IPC_PATH
from ._socket import RING_LINGER_MS as RING_LINGER_MS
from ._socket import CurveClient as CurveClient
from ._socket import Doorbells as Doorbells
from ._socket import Inbox as Inbox
from ._socket import Requester as Requester
from ._socket import RequestTimeout as RequestTimeout
from ._socket import ipc_address as ipc_address
from ._socket import new_context as new_context
from ._socket import zmq_size_ceiling as zmq_size_ceiling
