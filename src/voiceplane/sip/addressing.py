"""Where a message goes: transport addresses and next-hop choice (RFC 3261 sections 8.1.2, 18)."""

from __future__ import annotations

from typing import NamedTuple

from .headers import NameAddr
from .uri import SipUri

RELIABLE_TRANSPORTS = frozenset({"tcp", "tls"})


class Address(NamedTuple):
    """A transport address: the peer of a datagram or of a stream connection."""

    host: str
    port: int
    transport: str = "udp"  # lower case: "udp", "tcp" or "tls"

    @property
    def reliable(self) -> bool:
        return self.transport in RELIABLE_TRANSPORTS

    @property
    def via_transport(self) -> str:
        return self.transport.upper()

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host and not self.host.startswith("[") else self.host
        return f"{host}:{self.port};transport={self.transport}"


def address_of_uri(uri: SipUri, default_transport: str = "udp") -> Address:
    """The transport address a URI points at, without DNS (RFC 3263 is left to the adapter)."""
    transport = uri.param("transport")
    host = uri.host[1:-1] if uri.host.startswith("[") else uri.host
    return Address(host, uri.effective_port, (transport or default_transport).lower())


def next_hop(route_set: tuple[str, ...], remote_target: str, default_transport: str) -> Address:
    """RFC 3261 section 8.1.2 and 12.2.1.1: the first loose route, else the remote target."""
    if route_set:
        first = SipUri.parse(NameAddr.parse(route_set[0]).uri)
        return address_of_uri(first, default_transport)
    return address_of_uri(SipUri.parse(remote_target), default_transport)
