"""``tcp://HOST:PORT`` addresses of the cluster config (pure)."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

_HOSTNAME = re.compile(r"(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                       r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*")
FORM = ('expected "tcp://HOST:PORT" with HOST an IP address, a host name or * (every '
        'interface) and PORT 1-65535, e.g. "tcp://0.0.0.0:7700" or "tcp://[::1]:7700"')


@dataclass(frozen=True, slots=True)
class TcpAddress:
    """A node's TCP address.

    Attributes:
        host: an IP address (IPv6 without brackets), a host name, or ``*``.
        port: 1 to 65535.
    """

    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"tcp://{host}:{self.port}"


def tcp_address(text: object, field: str = "address") -> TcpAddress:
    """Parse ``"tcp://HOST:PORT"`` (pure).

    Raises:
        ValueError: not of that form, naming ``field`` (if not empty), the value and the
            form expected.
    """
    where = f"{field}: " if field else ""
    if not isinstance(text, str) or not text.startswith("tcp://"):
        raise ValueError(f"{where}{text!r} is not a tcp:// address; {FORM}")
    host, sep, port = text[len("tcp://"):].rpartition(":")
    if not sep or not host:
        raise ValueError(f"{where}{text!r} has no HOST:PORT; {FORM}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{where}{text!r}: {host!r} is not an IPv6 address; {FORM}"
                             ) from None
    elif ":" in host:
        raise ValueError(f"{where}{text!r}: an IPv6 address takes brackets; {FORM}")
    elif host != "*" and not _HOSTNAME.fullmatch(host):
        raise ValueError(f"{where}{text!r}: {host!r} is not a host name or IP address; "
                         f"{FORM}")
    if not (port.isascii() and port.isdigit()) or not 1 <= int(port) <= 65535:
        raise ValueError(f"{where}{text!r}: port {port!r} is not a number from 1 to "
                         f"65535; {FORM}")
    return TcpAddress(host, int(port))
