"""The callbacks' HTTP/1.1 client against raw servers on loopback: keep-alive reuse, a
connection the server closed while idle, answers framed by chunks or by the end of the
connection, basic auth from the URL, the target sent as given, and a server that hangs up
without answering."""

from __future__ import annotations

import asyncio
import base64
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from voiceplane.callbacks.http1 import ConnectionClosed, Http1Client

Answer = Callable[[bytes, asyncio.StreamWriter], Awaitable[bool]]  # -> keep the connection


@dataclass
class RawServer:
    answer: Answer
    heads: list[bytes] = field(default_factory=list)
    connections: int = 0
    port: int = 0
    _server: asyncio.Server | None = None

    async def start(self, tls: ssl.SSLContext | None = None) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=tls)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                await reader.readexactly(length)
                self.heads.append(head)
                if not await self.answer(head, writer):
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()


async def _no_content(head: bytes, writer: asyncio.StreamWriter) -> bool:
    writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
    await writer.drain()
    return True


@pytest.fixture
async def client() -> AsyncIterator[Http1Client]:
    http = Http1Client(connect_timeout_s=2)
    yield http
    await http.close()


async def _server(answer: Answer) -> RawServer:
    server = RawServer(answer)
    await server.start()
    return server


async def test_requests_reuse_a_kept_alive_connection_and_send_the_target_as_given(
    client: Http1Client,
) -> None:
    server = await _server(_no_content)
    url = f"http://127.0.0.1:{server.port}/cb?to=%2B91%2098&x=a%26b"
    for _ in range(3):
        assert await client.request("GET", url, headers={"a": "b"}, body=None) == 204
    status = await client.request("POST", url, headers={}, body=b'{"n": 1}')
    await server.stop()
    assert status == 204 and server.connections == 1
    assert server.heads[0].startswith(b"GET /cb?to=%2B91%2098&x=a%26b HTTP/1.1\r\n")
    assert b"\r\nhost: 127.0.0.1:%d\r\n" % server.port in server.heads[0]
    assert b"\r\na: b\r\n" in server.heads[0] and b"content-length: 8" in server.heads[3]


async def test_a_connection_the_server_closed_while_idle_is_replaced(
    client: Http1Client,
) -> None:
    async def once_per_connection(head: bytes, writer: asyncio.StreamWriter) -> bool:
        # Says keep-alive, then closes anyway: the client finds out on its next request.
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        await writer.drain()
        return False

    server = await _server(once_per_connection)
    url = f"http://127.0.0.1:{server.port}/"
    assert await client.request("POST", url, headers={}, body=b"1") == 200
    await asyncio.sleep(0.1)  # the close has reached the client
    assert await client.request("POST", url, headers={}, body=b"2") == 200
    await server.stop()
    assert len(server.heads) == 2 and server.connections == 2


async def test_a_request_the_server_dropped_on_a_reused_connection_is_sent_once_more(
    client: Http1Client,
) -> None:
    # The race a kept-alive connection has: the server closes it as the request goes out.
    answered: set[int] = set()

    async def first_only(head: bytes, writer: asyncio.StreamWriter) -> bool:
        if id(writer) in answered:
            return False  # the second request on a connection: hang up without answering
        answered.add(id(writer))
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
        await writer.drain()
        return True

    server = await _server(first_only)
    url = f"http://127.0.0.1:{server.port}/"
    assert await client.request("POST", url, headers={}, body=b"1") == 200
    assert await client.request("POST", url, headers={}, body=b"2") == 200
    await server.stop()
    assert [head.split(b" ")[0] for head in server.heads] == [b"POST"] * 3
    assert server.connections == 2


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 201 Created\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        b"HTTP/1.1 201 Created\r\nconnection: close\r\n\r\nuntil the end",
        b"HTTP/1.0 201 Created\r\n\r\nold style",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\ncontent-length: 0\r\n\r\n",
    ],
    ids=["chunked", "until-close", "http-1.0", "after-100"],
)
async def test_answers_framed_by_chunks_or_by_the_end_of_the_connection(
    client: Http1Client, answer: bytes
) -> None:
    async def reply(head: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(answer)
        await writer.drain()
        return b"chunked" in answer or b"100" in answer

    server = await _server(reply)
    url = f"http://127.0.0.1:{server.port}/x"
    assert await client.request("GET", url, headers={}, body=None) == 201
    assert await client.request("GET", url, headers={}, body=None) == 201
    await server.stop()
    kept_alive = b"chunked" in answer or b"100" in answer
    assert server.connections == (1 if kept_alive else 2)


async def test_basic_auth_comes_from_the_url(client: Http1Client) -> None:
    server = await _server(_no_content)
    url = f"http://us%40er:p%3Ass@127.0.0.1:{server.port}/hook"
    assert await client.request("GET", url, headers={}, body=None) == 204
    await server.stop()
    expected = base64.b64encode(b"us@er:p:ss")
    assert b"\r\nauthorization: Basic " + expected + b"\r\n" in server.heads[0]
    assert b"\r\nhost: 127.0.0.1:%d\r\n" % server.port in server.heads[0]


async def test_a_server_that_hangs_up_without_answering_is_an_error(
    client: Http1Client,
) -> None:
    async def hang_up(head: bytes, writer: asyncio.StreamWriter) -> bool:
        return False

    server = await _server(hang_up)
    with pytest.raises(ConnectionClosed):
        await client.request("GET", f"http://127.0.0.1:{server.port}/", headers={}, body=None)
    await server.stop()


async def test_urls_it_cannot_send_are_refused(client: Http1Client) -> None:
    with pytest.raises(ValueError, match="http"):
        await client.request("GET", "ftp://example.test/x", headers={}, body=None)
    with pytest.raises(ValueError, match="host"):
        await client.request("GET", "http:///x", headers={}, body=None)


async def test_https_verifies_the_servers_certificate(tmp_path: Path) -> None:
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    served = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    served.load_cert_chain(cert, key)
    server = RawServer(_no_content)
    await server.start(tls=served)
    url = f"https://localhost:{server.port}/hook"
    default = Http1Client(connect_timeout_s=2)
    with pytest.raises(ssl.SSLCertVerificationError):  # self-signed: refused by default
        await default.request("POST", url, headers={}, body=b"{}")
    await default.close()
    trusting = ssl.create_default_context(cafile=str(cert))
    client = Http1Client(connect_timeout_s=2, tls=trusting)
    assert await client.request("POST", url, headers={}, body=b"{}") == 204
    assert await client.request("POST", url, headers={}, body=b"{}") == 204
    await client.close()
    await server.stop()
    assert server.connections == 1 and len(server.heads) == 2
