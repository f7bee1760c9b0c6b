"""A lean open-loop HTTP/1.1 load generator for the benchmarks.

httpx spends about a millisecond of CPU per request, so at a few hundred requests a second
the load generator itself, on the same two cores, becomes what is measured. This keeps a
pool of keep-alive connections, writes pre-encoded requests and parses responses with
httptools (the C parser uvicorn uses), at a few tens of microseconds a request.

Latency is measured from the moment the request was due, not from when a connection was
free, so a server that falls behind shows it (no coordinated omission).
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from dataclasses import dataclass, field

import httptools


@dataclass
class Reply:
    status: int
    body: bytes


@dataclass
class _Connection(asyncio.Protocol):
    pool: Pool
    transport: asyncio.Transport | None = None
    waiter: asyncio.Future[Reply] | None = None
    body: bytearray = field(default_factory=bytearray)
    parser: httptools.HttpResponseParser | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def send(self, request: bytes) -> asyncio.Future[Reply]:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.body = bytearray()
        self.parser = httptools.HttpResponseParser(self)
        self.transport.write(request)
        return self.waiter

    # httptools callbacks
    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        assert self.parser is not None and self.waiter is not None
        if not self.waiter.done():
            self.waiter.set_result(Reply(self.parser.get_status_code(), bytes(self.body)))

    def data_received(self, data: bytes) -> None:
        assert self.parser is not None
        self.parser.feed_data(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("the server closed the connection"))
        self.pool.lost(self)


class Pool:
    """Up to ``size`` keep-alive connections to ``host:port``."""

    def __init__(self, host: str, port: int, size: int = 256) -> None:
        self.host, self.port, self.size = host, port, size
        self.idle: deque[_Connection] = deque()
        self.count = 0
        self.waiting: deque[asyncio.Future[_Connection]] = deque()

    async def _take(self) -> _Connection:
        if self.idle:
            return self.idle.popleft()
        if self.count < self.size:
            self.count += 1
            loop = asyncio.get_running_loop()
            _transport, connection = await loop.create_connection(
                lambda: _Connection(self), self.host, self.port
            )
            return connection
        waiter: asyncio.Future[_Connection] = asyncio.get_running_loop().create_future()
        self.waiting.append(waiter)
        return await waiter

    def _give_back(self, connection: _Connection) -> None:
        while self.waiting:
            waiter = self.waiting.popleft()
            if not waiter.done():
                waiter.set_result(connection)
                return
        self.idle.append(connection)

    def lost(self, connection: _Connection) -> None:
        self.count -= 1
        if connection in self.idle:
            self.idle.remove(connection)

    async def post_json(self, path: str, payload: object, headers: dict[str, str]) -> Reply:
        body = json.dumps(payload).encode()
        head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        request = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n{head}"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        connection = await self._take()
        try:
            reply = await connection.send(request)
        except BaseException:
            if connection.transport is not None:
                connection.transport.close()
            raise
        self._give_back(connection)
        return reply

    def close(self) -> None:
        for connection in self.idle:
            if connection.transport is not None:
                connection.transport.close()
