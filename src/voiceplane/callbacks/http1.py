"""A small HTTP/1.1 client for callbacks: one request, one status, connections kept alive.

A callback needs little of HTTP: send a request, read the status, drop the body, reuse the
connection. aiohttp did that at about 265 µs of CPU per request in the sender process
(bench/callbacks.py), most of it its own generality; this client writes the request in one
piece and parses the answer with httptools (llhttp, already a dependency through the
receiver and uvicorn).

What it does: http and https (the default TLS context: certificates verified),
``user:password@`` in the URL as basic auth, keep-alive per scheme+host+port, bodies framed
by content-length, chunks or the end of the connection. A request on a kept-alive
connection that the server closed before answering is sent once more on a new connection
(the server dropped it while idle). No redirects, no proxies, no cookies: a callback does
not need them.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
from collections.abc import Mapping
from typing import Final
from urllib.parse import unquote, urlsplit

import httptools

MAX_IDLE_PER_DESTINATION: Final = 64


class ConnectionClosed(ConnectionError):
    """The server closed the connection before its answer was complete."""


class _Connection(asyncio.Protocol):
    """One TCP (or TLS) connection; one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._answer: asyncio.Future[tuple[int, bool]] | None = None
        self._headers_done = False
        self.received = False  # any byte of the current answer
        self.closed = False

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass

    def data_received(self, data: bytes) -> None:
        self.received = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as error:
            self._fail(ValueError(f"bad HTTP answer: {error}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._headers_done:  # an answer framed by the end of the connection
            self._finish(keep_alive=False)
        self._fail(exc or ConnectionClosed("the server closed the connection"))

    # httptools
    def on_headers_complete(self) -> None:
        self._headers_done = True

    def on_message_complete(self) -> None:
        if self._parser.get_status_code() < 200:  # 1xx: informational, the answer follows
            self._headers_done = False
            return
        self._finish(keep_alive=self._parser.should_keep_alive())

    # ours
    def send(self, request: bytes) -> asyncio.Future[tuple[int, bool]]:
        assert self.transport is not None
        self._answer = asyncio.get_running_loop().create_future()
        self._headers_done = False
        self.received = False
        self.transport.write(request)
        return self._answer

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def _finish(self, *, keep_alive: bool) -> None:
        answer = self._answer
        if answer is not None and not answer.done():
            answer.set_result((self._parser.get_status_code(), keep_alive))
        self._headers_done = False

    def _fail(self, error: BaseException) -> None:
        answer = self._answer
        if answer is not None and not answer.done():
            answer.set_exception(error)


Destination = tuple[str, str, int]


class Http1Client:
    """Requests over kept-alive connections; ``close`` ends them all."""

    def __init__(self, *, connect_timeout_s: float, tls: ssl.SSLContext | None = None) -> None:
        """``tls``: the context for https (default: the system's, certificates verified)."""
        self._connect_timeout_s = connect_timeout_s
        self._idle: dict[Destination, list[_Connection]] = {}
        self._busy: set[_Connection] = set()
        self._tls = tls

    async def request(
        self, method: str, url: str, *, headers: Mapping[str, str], body: bytes | None
    ) -> int:
        """Send one request; the answer's status code (its body is read and dropped)."""
        parsed = urlsplit(url)
        scheme = parsed.scheme.lower()
        if scheme not in ("http", "https"):
            raise ValueError(f"not an http(s) URL: {url!r}")
        host = parsed.hostname
        if not host:
            raise ValueError(f"no host in {url!r}")
        port = parsed.port or (443 if scheme == "https" else 80)
        target = (parsed.path or "/") + (f"?{parsed.query}" if parsed.query else "")
        authority = parsed.netloc.rpartition("@")[2]
        lines = [f"{method} {target} HTTP/1.1", f"host: {authority}"]
        if parsed.username is not None:
            credentials = f"{unquote(parsed.username)}:{unquote(parsed.password or '')}"
            lines.append("authorization: Basic " + base64.b64encode(credentials.encode()).decode())
        lines += [f"{name}: {value}" for name, value in headers.items()]
        if body is not None:
            lines.append(f"content-length: {len(body)}")
        request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")
        key = (scheme, host, port)
        connection = self._take_idle(key)
        if connection is not None:
            try:
                return await self._exchange(key, connection, request)
            except (ConnectionClosed, ConnectionResetError, BrokenPipeError):
                if connection.received:
                    raise
                # Closed by the server while idle, before it read this: once more, anew.
        return await self._exchange(key, await self._connect(key), request)

    async def close(self) -> None:
        for connections in self._idle.values():
            for connection in connections:
                connection.close()
        self._idle.clear()
        for connection in list(self._busy):
            connection.close()
        self._busy.clear()

    def _take_idle(self, key: Destination) -> _Connection | None:
        idle = self._idle.get(key)
        while idle:
            connection = idle.pop()
            if not connection.closed:
                return connection
        return None

    async def _connect(self, key: Destination) -> _Connection:
        scheme, host, port = key
        tls = None
        if scheme == "https":
            if self._tls is None:
                self._tls = ssl.create_default_context()
            tls = self._tls
        loop = asyncio.get_running_loop()
        connection = _Connection()
        async with asyncio.timeout(self._connect_timeout_s):
            await loop.create_connection(
                lambda: connection, host, port, ssl=tls, server_hostname=host if tls else None
            )
        return connection

    async def _exchange(self, key: Destination, connection: _Connection, request: bytes) -> int:
        self._busy.add(connection)
        kept = False
        try:
            status, keep_alive = await connection.send(request)
            kept = keep_alive and not connection.closed
            return status
        finally:
            self._busy.discard(connection)
            if kept:
                idle = self._idle.setdefault(key, [])
                idle[:] = [other for other in idle if not other.closed]  # closed while idle
                if len(idle) < MAX_IDLE_PER_DESTINATION:
                    idle.append(connection)
                else:
                    connection.close()
            else:
                connection.close()
