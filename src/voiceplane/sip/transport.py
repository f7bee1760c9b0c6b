"""asyncio transports for the SIP endpoint: UDP and TCP, listening and connecting.

A thin shell in the style of aioquic's protocol: bytes that arrive go into the sans-IO
endpoint with ``loop.time()``, then whatever it wants sent is sent and one loop timer is
re-armed for its next deadline. No SIP logic lives here.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections.abc import Callable
from typing import cast

from .addressing import Address
from .endpoint import SipEndpoint
from .errors import SipParseError
from .message import StreamFramer

log = logging.getLogger(__name__)

EventSink = Callable[[list[object]], None]
_MAX_TIMER_SLACK = 0.010  # s


class TransportShell:
    """Owns the sockets and the timer of one ``SipEndpoint``."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.endpoint: SipEndpoint | None = None
        self.on_events: EventSink = lambda events: None
        self._udp: dict[str, asyncio.DatagramTransport] = {}
        self._tcp_servers: list[asyncio.Server] = []
        self._connections: dict[Address, _TcpConnection] = {}
        self._connecting: dict[Address, list[bytes]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._flushing = False
        self._again = False
        self._resolved: dict[str, str] = {}

    # --- binding -------------------------------------------------------------------------------

    async def listen_udp(self, host: str, port: int) -> Address:
        transport, _ = await self.loop.create_datagram_endpoint(
            lambda: _UdpProtocol(self), local_addr=(host, port), reuse_port=False
        )
        sock = transport.get_extra_info("socket")
        for option, size in ((socket.SO_RCVBUF, 4 << 20), (socket.SO_SNDBUF, 4 << 20)):
            try:
                sock.setsockopt(socket.SOL_SOCKET, option, size)
            except OSError:  # pragma: no cover - a kernel limit; the default still works
                pass
        self._udp["udp"] = transport
        bound = transport.get_extra_info("sockname")
        return Address(bound[0], bound[1], "udp")

    async def listen_tcp(self, host: str, port: int) -> Address:
        server = await self.loop.create_server(
            lambda: _TcpConnection(self, None), host, port, reuse_address=True
        )
        self._tcp_servers.append(server)
        bound = server.sockets[0].getsockname()
        return Address(bound[0], bound[1], "tcp")

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        for udp in self._udp.values():
            udp.close()
        for conn in list(self._connections.values()):
            conn.close()
        for server in self._tcp_servers:
            server.close()
            await server.wait_closed()

    # --- the drive loop ------------------------------------------------------------------------

    def received(self, data: bytes, source: Address) -> None:
        endpoint = self.endpoint
        if endpoint is None:
            return
        endpoint.receive(data, source, self.loop.time())
        self.flush()

    def flush(self) -> None:
        """Send what the endpoint produced, hand its events up, re-arm the timer.

        Event handlers may act on legs at once (answer, cancel); that only asks for
        another round, never a nested one.
        """
        if self._flushing:
            self._again = True
            return
        endpoint = self.endpoint
        if endpoint is None:
            return
        self._flushing = True
        try:
            while True:
                self._again = False
                for data, dest in endpoint.datagrams_to_send():
                    self._send(data, dest)
                events = endpoint.events()
                if events:
                    self.on_events(events)
                if not self._again and not events:
                    break
        finally:
            self._flushing = False
        self._rearm()

    def _rearm(self) -> None:
        endpoint = self.endpoint
        assert endpoint is not None
        deadline = endpoint.next_deadline()
        if deadline is None:
            return
        # A timer may fire a little late (2 % of its delay, at most 10 ms): the timers of
        # many transactions then come due in one wake-up instead of one each.
        when = deadline + min(_MAX_TIMER_SLACK, max(0.0, deadline - self.loop.time()) * 0.02)
        if self._timer_at is not None and self._timer_at <= when and self._timer is not None:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = when
        self._timer = self.loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        endpoint = self.endpoint
        if endpoint is None:
            return
        endpoint.handle_timer(self.loop.time())
        self.flush()

    # --- sending -------------------------------------------------------------------------------

    def _send(self, data: bytes, dest: Address) -> None:
        host = self._resolve(dest.host)
        if dest.transport == "udp":
            udp = self._udp.get("udp")
            if udp is not None:
                udp.sendto(data, (host, dest.port))
            return
        key = Address(host, dest.port, dest.transport)
        conn = self._connections.get(key)
        if conn is not None:
            conn.write(data)
        elif key in self._connecting:
            self._connecting[key].append(data)
        else:
            self._connecting[key] = [data]
            self.loop.create_task(self._connect(key, dest))

    async def _connect(self, key: Address, dest: Address) -> None:
        try:
            await self.loop.create_connection(lambda: _TcpConnection(self, key), key.host, key.port)
        except OSError as exc:
            log.info("cannot reach %s: %s", dest, exc)
            self._connecting.pop(key, None)
            if self.endpoint is not None:
                self.endpoint.transport_failed(dest, self.loop.time())
                self.flush()

    def _resolve(self, host: str) -> str:
        """IP literals go as they are; names are looked up once (RFC 3263 is out of scope here)."""
        cached = self._resolved.get(host)
        if cached is not None:
            return cached
        try:
            ipaddress.ip_address(host)
            resolved = host
        except ValueError:
            resolved = socket.gethostbyname(host)
        self._resolved[host] = resolved
        return resolved

    def _connection_made(self, conn: _TcpConnection) -> None:
        self._connections[conn.peer] = conn
        for data in self._connecting.pop(conn.peer, []):
            conn.write(data)

    def _connection_lost(self, conn: _TcpConnection) -> None:
        if self._connections.get(conn.peer) is conn:
            del self._connections[conn.peer]


_MAX_KNOWN_PEERS = 4096


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, shell: TransportShell) -> None:
        self.shell = shell
        # The same few peers send nearly every datagram: one Address each, made once.
        self._peers: dict[tuple[str | object, int], Address] = {}

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        if len(data) < 16:  # keep-alives (CRLF) and runts: not SIP
            return
        peer = self._peers.get(addr)
        if peer is None:
            peer = Address(str(addr[0]), int(addr[1]), "udp")
            if len(self._peers) >= _MAX_KNOWN_PEERS:
                self._peers.clear()
            self._peers[addr] = peer
        self.shell.received(data, peer)

    def error_received(self, exc: Exception) -> None:
        log.debug("UDP error: %s", exc)


class _TcpConnection(asyncio.Protocol):
    def __init__(self, shell: TransportShell, peer: Address | None) -> None:
        self.shell = shell
        self.peer = peer or Address("", 0, "tcp")
        self.framer = StreamFramer()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport: trust the protocol contract.
        self.transport = cast(asyncio.Transport, transport)
        if not self.peer.host:
            host, port = transport.get_extra_info("peername")[:2]
            self.peer = Address(host, port, "tcp")
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.shell._connection_made(self)

    def data_received(self, data: bytes) -> None:
        self.framer.feed(data)
        try:
            while (message := self.framer.next_message()) is not None:
                self.shell.received(message, self.peer)
        except SipParseError as exc:
            # A stream that lost its framing cannot be resynchronised: drop the connection.
            log.info("closing TCP connection from %s: %s", self.peer, exc.reason)
            self.close()

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.shell._connection_lost(self)
