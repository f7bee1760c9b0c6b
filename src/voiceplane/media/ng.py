"""rtpengine's ng control protocol over UDP, and the DTMF events it logs.

A message is ``<cookie> <bencoded dictionary>``; the reply carries the request's cookie, so
replies are matched by cookie, not by order. UDP may lose either datagram, so a request is
sent again, with the same cookie, until a reply comes or the time is up: rtpengine keeps
the replies of recent cookies and answers a repeat without doing the command twice. Each
client draws a random cookie prefix, so a restarted process never meets an old reply.

A reply says ``result: ok`` (``pong`` for ping) or ``result: error`` with an
``error-reason``; the latter is raised as ``NgError``. The commands are built by the
functions below (sans-IO); ``NgClient`` sends them, awaited (``request``) or, for callers
that cannot await, blocking the thread for one round trip (``request_blocking``).

DTMF: started with ``--dtmf-log-dest=HOST:PORT``, rtpengine sends one JSON datagram per key
press it sees in RFC 4733 packets (at the end of the event), e.g.
``{"callid": "...", "source_tag": "...", "event": 5, "duration": 120, ...}``;
``parse_dtmf_log`` reads it. (rtpengine 10.5 has no per-call destination for these.)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .bencode import BencodeError, Encodable, Value, decode, encode
from .errors import MediaError

__all__ = [
    "Command",
    "DtmfLogEvent",
    "NgClient",
    "NgError",
    "NgTimeout",
    "answer",
    "block_dtmf",
    "block_media",
    "decode_message",
    "delete",
    "offer",
    "parse_dtmf_log",
    "ping",
    "play_media",
    "query",
    "start_recording",
    "stop_media",
    "stop_recording",
    "unblock_media",
]

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 2.0  # seconds for a request, retransmissions included
FIRST_RETRANSMIT = 0.1  # seconds; doubled after each retransmission ...
MAX_RETRANSMIT = 0.5  # ... up to this
# RFC 4733 section 3.2 event codes 0-15 as keys; rtpengine reports the code.
_DTMF_KEYS = "0123456789*#ABCD"


class NgError(MediaError):
    """rtpengine answered ``result: error``; ``reason`` is its ``error-reason``."""

    def __init__(self, command: str, reason: str) -> None:
        super().__init__(f"rtpengine refused {command!r}: {reason}")
        self.command = command
        self.reason = reason


class NgTimeout(MediaError):
    """No reply from rtpengine in time (not running, wrong address, or overloaded)."""


@dataclass(frozen=True, slots=True)
class Command:
    """One ng request: the command name and its other keys."""

    name: str
    args: Mapping[str, Encodable] = field(default_factory=dict)

    def message(self, cookie: bytes) -> bytes:
        return cookie + b" " + encode({"command": self.name, **self.args})


# ---------------------------------------------------------------------- commands


def ping() -> Command:
    return Command("ping")


def offer(call_id: str, from_tag: str, sdp: bytes, **extra: Encodable) -> Command:
    """The SDP offer of ``from_tag``; the reply's ``sdp`` is what the other side gets."""
    return Command("offer", {"call-id": call_id, "from-tag": from_tag, "sdp": sdp, **extra})


def answer(call_id: str, from_tag: str, to_tag: str, sdp: bytes, **extra: Encodable) -> Command:
    """``to_tag``'s answer to ``from_tag``'s offer; the reply's ``sdp`` goes to the offerer."""
    args = {"call-id": call_id, "from-tag": from_tag, "to-tag": to_tag, "sdp": sdp, **extra}
    return Command("answer", args)


def delete(call_id: str, *, delay: int | None = None) -> Command:
    """End the call; ``delay`` seconds overrides rtpengine's ``--delete-delay`` (0: at once)."""
    args: dict[str, Encodable] = {"call-id": call_id}
    if delay is not None:
        args["delete delay"] = delay
    return Command("delete", args)


def query(call_id: str) -> Command:
    return Command("query", {"call-id": call_id})


def play_media(
    call_id: str,
    to_tag: str,
    *,
    file: str | None = None,
    blob: bytes | None = None,
    repeat_times: int = 1,
) -> Command:
    """Play a media file (any format rtpengine's ffmpeg reads) to the participant ``to_tag``.

    ``file`` is a path on rtpengine's machine; ``blob`` the file's bytes (small files only:
    the whole message must fit in one datagram). The reply may carry ``duration`` in ms.
    """
    if (file is None) == (blob is None):
        raise ValueError("play_media wants exactly one of file and blob")
    if repeat_times < 1:
        raise ValueError(f"repeat_times must be at least 1, got {repeat_times}")
    # rtpengine names the participant media is played to by its from-tag.
    args: dict[str, Encodable] = {"call-id": call_id, "from-tag": to_tag}
    if file is not None:
        args["file"] = file
    if blob is not None:
        args["blob"] = blob
    if repeat_times != 1:
        args["repeat-times"] = repeat_times
    return Command("play media", args)


def stop_media(call_id: str, to_tag: str) -> Command:
    return Command("stop media", {"call-id": call_id, "from-tag": to_tag})


def block_media(call_id: str, from_tag: str) -> Command:
    """Stop relaying ``from_tag``'s audio (its RFC 4733 events still pass)."""
    return Command("block media", {"call-id": call_id, "from-tag": from_tag})


def unblock_media(call_id: str, from_tag: str) -> Command:
    return Command("unblock media", {"call-id": call_id, "from-tag": from_tag})


def block_dtmf(call_id: str, from_tag: str) -> Command:
    """Stop relaying ``from_tag``'s RFC 4733 events (the DTMF log still reports them)."""
    return Command("block DTMF", {"call-id": call_id, "from-tag": from_tag})


def start_recording(call_id: str, *, file: str | None = None) -> Command:
    """Record the whole call (rtpengine records calls, not legs); ``file``: absolute path."""
    args: dict[str, Encodable] = {"call-id": call_id}
    if file is not None:
        args["recording-file"] = file
    return Command("start recording", args)


def stop_recording(call_id: str) -> Command:
    return Command("stop recording", {"call-id": call_id})


# ---------------------------------------------------------------------- replies


def decode_message(data: bytes) -> tuple[bytes, dict[str, Value]]:
    """A datagram's cookie and dictionary; ``MediaError`` if it is not an ng message."""
    cookie, space, body = data.partition(b" ")
    if not space or not cookie:
        raise MediaError("ng message without a cookie")
    try:
        value = decode(body)
    except BencodeError as exc:
        raise MediaError(f"ng message is not bencoded: {exc}") from exc
    if not isinstance(value, dict):
        raise MediaError("ng message is not a dictionary")
    return cookie, value


def check_reply(command: Command, reply: dict[str, Value]) -> dict[str, Value]:
    """``reply`` if it says ok (or pong); ``NgError`` if rtpengine refused the command."""
    result = reply.get("result")
    if result in (b"ok", b"pong"):
        if "warning" in reply:
            log.warning("rtpengine %s: %s", command.name, _text(reply["warning"]))
        return reply
    if result == b"error":
        raise NgError(command.name, _text(reply.get("error-reason", b"no reason given")))
    raise MediaError(f"rtpengine answered {command.name!r} with result {result!r}")


def _text(value: Value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


# ---------------------------------------------------------------------- DTMF log


@dataclass(frozen=True, slots=True)
class DtmfLogEvent:
    """One key press rtpengine saw from participant ``source_tag`` of call ``call_id``."""

    call_id: str
    source_tag: str
    digit: str


def parse_dtmf_log(data: bytes) -> DtmfLogEvent:
    """An event of rtpengine's DTMF log; ``MediaError`` if it is not one."""
    try:
        event: Any = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MediaError(f"DTMF log datagram is not JSON: {exc}") from exc
    if not isinstance(event, dict):
        raise MediaError("DTMF log datagram is not a JSON object")
    call_id, tag, code = event.get("callid"), event.get("source_tag"), event.get("event")
    if not isinstance(call_id, str) or not isinstance(tag, str):
        raise MediaError("DTMF log event without callid or source_tag")
    if isinstance(code, bool) or not isinstance(code, int) or not 0 <= code < len(_DTMF_KEYS):
        raise MediaError(f"DTMF log event {code!r} is not a DTMF key (0-15)")
    return DtmfLogEvent(call_id, tag, _DTMF_KEYS[code])


# ---------------------------------------------------------------------- client


class NgClient:
    """Talks ng over UDP to the rtpengine at ``address`` (an IP address and port).

    Create with ``await NgClient.connect(address)``; ``close()`` when done.
    """

    def __init__(
        self,
        address: tuple[str, int],
        *,
        timeout: float = DEFAULT_TIMEOUT,
        first_retransmit: float = FIRST_RETRANSMIT,
    ) -> None:
        if timeout <= 0 or first_retransmit <= 0:
            raise ValueError("ng timeout and retransmission interval must be positive")
        self.address = address
        self.timeout = timeout
        self.first_retransmit = first_retransmit
        self._prefix = secrets.token_hex(6)
        self._counter = 0
        self._pending: dict[bytes, asyncio.Future[dict[str, Value]]] = {}
        self._transport: asyncio.DatagramTransport | None = None
        self._blocking: socket.socket | None = None

    @classmethod
    async def connect(cls, address: tuple[str, int], **options: float) -> NgClient:
        client = cls(address, **options)
        loop = asyncio.get_running_loop()
        # Connected: only rtpengine's datagrams come in, and ICMP errors are reported.
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Protocol(client), remote_addr=address
        )
        client._transport = transport
        return client

    def _cookie(self) -> bytes:
        self._counter += 1
        return f"{self._prefix}_{self._counter}".encode()

    async def request(self, command: Command) -> dict[str, Value]:
        """Send ``command``; its reply. ``NgError`` if refused, ``NgTimeout`` if none."""
        if self._transport is None or self._transport.is_closing():
            raise MediaError("the ng client is closed")
        loop = asyncio.get_running_loop()
        cookie = self._cookie()
        message = command.message(cookie)
        reply: asyncio.Future[dict[str, Value]] = loop.create_future()
        self._pending[cookie] = reply
        deadline = loop.time() + self.timeout
        interval = self.first_retransmit
        try:
            while True:
                self._transport.sendto(message)
                wait = max(0.0, min(interval, deadline - loop.time()))
                done, _ = await asyncio.wait({reply}, timeout=wait)
                if done:
                    return check_reply(command, reply.result())
                if loop.time() >= deadline:
                    raise NgTimeout(self._timeout_message(command))
                interval = min(interval * 2, MAX_RETRANSMIT)
        finally:
            self._pending.pop(cookie, None)

    def request_blocking(self, command: Command) -> dict[str, Value]:
        """``request`` for synchronous callers: blocks this thread until the reply.

        On loopback a round trip takes well under a millisecond; the retransmission and
        timeout rules are those of ``request``.
        """
        if self._transport is None or self._transport.is_closing():
            raise MediaError("the ng client is closed")
        sock = self._blocking_socket()
        cookie = self._cookie()
        message = command.message(cookie)
        deadline = time.monotonic() + self.timeout
        interval = self.first_retransmit
        while True:
            with contextlib.suppress(OSError):  # refused: an ICMP error from an earlier send
                sock.send(message)
            resend_at = min(time.monotonic() + interval, deadline)
            while (left := resend_at - time.monotonic()) > 0:
                sock.settimeout(left)
                try:
                    data = sock.recv(65535)
                except TimeoutError:
                    break
                except OSError as exc:  # ICMP port unreachable: nobody listens there yet
                    log.debug("ng socket error: %s", exc)
                    time.sleep(min(left, interval))
                    break
                try:
                    got, reply = decode_message(data)
                except MediaError as exc:
                    log.warning("dropped a malformed ng reply: %s", exc)
                    continue
                if got == cookie:
                    return check_reply(command, reply)
            if time.monotonic() >= deadline:
                raise NgTimeout(self._timeout_message(command))
            interval = min(interval * 2, MAX_RETRANSMIT)

    def _blocking_socket(self) -> socket.socket:
        if self._blocking is None:
            family = socket.AF_INET6 if ":" in self.address[0] else socket.AF_INET
            self._blocking = socket.socket(family, socket.SOCK_DGRAM)
            self._blocking.connect(self.address)  # only its replies, and ICMP errors
        return self._blocking

    def _timeout_message(self, command: Command) -> str:
        host, port = self.address
        return f"no reply from rtpengine at {host}:{port} to {command.name!r} in {self.timeout:g} s"

    def _on_datagram(self, data: bytes) -> None:
        try:
            cookie, reply = decode_message(data)
        except MediaError as exc:
            log.warning("dropped a malformed ng reply: %s", exc)
            return
        waiter = self._pending.get(cookie)
        if waiter is not None and not waiter.done():
            waiter.set_result(reply)
        # else: the reply to a retransmission already answered, or to a request given up

    async def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
        if self._blocking is not None:
            self._blocking.close()
            self._blocking = None
        for waiter in self._pending.values():
            if not waiter.done():
                waiter.set_exception(MediaError("the ng client is closed"))
        self._pending.clear()


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, client: NgClient) -> None:
        self._client = client

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self._client._on_datagram(data)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable: rtpengine is not (yet) there. The retransmission goes on.
        log.debug("ng socket error: %s", exc)
