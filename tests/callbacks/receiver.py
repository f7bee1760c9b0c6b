"""A tiny HTTP/1.1 server on loopback that records what it receives (keep-alive aware).

``respond(request)`` decides each answer's status (and may sleep, to make a client time out);
``concurrency`` and ``max_concurrency`` count requests being answered at the same time.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Request:
    method: str
    target: str  # path and query, as sent
    headers: dict[str, str]
    body: bytes


async def _ok(request: Request) -> int:
    return 200


@dataclass
class Receiver:
    respond: Callable[[Request], Awaitable[int]] = _ok
    requests: list[Request] = field(default_factory=list)
    concurrency: int = 0
    max_concurrency: int = 0
    port: int = 0
    _server: asyncio.Server | None = None
    _connections: set[asyncio.StreamWriter] = field(default_factory=set)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self, port: int = 0) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for connection in list(self._connections):
                connection.close()
            await self._server.wait_closed()
            self._server = None

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def wait_for(self, count: int, timeout: float = 15) -> list[Request]:
        async with asyncio.timeout(timeout):
            while len(self.requests) < count:
                self._changed.clear()
                await self._changed.wait()
        return self.requests

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._connections.add(writer)
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, target, _version = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    if line:
                        name, value = line.split(":", 1)
                        headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                request = Request(method, target, headers, body)
                self.concurrency += 1
                self.max_concurrency = max(self.max_concurrency, self.concurrency)
                try:
                    status = await self.respond(request)
                finally:
                    self.concurrency -= 1
                self.requests.append(request)
                self._changed.set()
                # A 204 has no body (RFC 9110 section 15.3.5): a client leaves one on the wire.
                answer = "" if status == 204 else "ok"
                writer.write(
                    f"HTTP/1.1 {status} X\r\ncontent-length: {len(answer)}\r\n\r\n{answer}"
                    .encode("latin-1")
                )
                await writer.drain()
        self._connections.discard(writer)
        writer.close()
