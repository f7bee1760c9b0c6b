"""A minimal HTTP/1.1 receiver for bench/callbacks.py, run in a process of its own.

    python bench/_callback_receiver.py PORT OUT.json

It answers every request ``204`` at once (keep-alive) and notes, per request, the wall-clock
arrival time and the ``webhook-id`` header (or the request path for a GET). On SIGTERM it
writes them as JSON to OUT.json and exits. httptools parses (it is a voiceplane dependency).
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time

import httptools

ANSWER = b"HTTP/1.1 204 No Content\r\nconnection: keep-alive\r\n\r\n"


class Receiver(asyncio.Protocol):
    def __init__(self, arrivals: list[tuple[str, float]]) -> None:
        self.arrivals = arrivals
        self.parser = httptools.HttpRequestParser(self)
        self.webhook_id = ""
        self.url = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    # httptools callbacks
    def on_message_begin(self) -> None:
        self.webhook_id = ""

    def on_url(self, url: bytes) -> None:
        self.url = url

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"webhook-id":
            self.webhook_id = value.decode()

    def on_message_complete(self) -> None:
        self.arrivals.append((self.webhook_id or self.url.decode(), time.time()))
        assert self.transport is not None
        self.transport.write(ANSWER)


async def main(port: int, out: str) -> None:
    arrivals: list[tuple[str, float]] = []
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: Receiver(arrivals), "127.0.0.1", port, backlog=1024
    )
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    print("ready", flush=True)
    await stop.wait()
    server.close()
    with open(out, "w") as file:
        json.dump(arrivals, file)


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover
        pass
    asyncio.run(main(int(sys.argv[1]), sys.argv[2]))
