"""The ng client against a fake rtpengine: cookies, retransmission, errors, timeouts."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Callable, Iterator

import pytest

from voiceplane.media import ng
from voiceplane.media.bencode import Value, decode, encode
from voiceplane.media.errors import MediaError

Handler = Callable[[int, dict[str, Value]], list[dict[str, Value] | bytes]]


class FakeRtpengine:
    """A UDP ng server in a thread; ``handler(nth, request)`` says what to send back."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.received: list[tuple[bytes, dict[str, Value]]] = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.address: tuple[str, int] = self.sock.getsockname()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            cookie, _, body = data.partition(b" ")
            request = decode(body)
            assert isinstance(request, dict)
            self.received.append((cookie, request))
            for reply in self.handler(len(self.received), request):
                raw = reply if isinstance(reply, bytes) else cookie + b" " + encode(reply)
                self.sock.sendto(raw, peer)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


@pytest.fixture
def fake() -> Iterator[Callable[[Handler], FakeRtpengine]]:
    servers: list[FakeRtpengine] = []

    def start(handler: Handler) -> FakeRtpengine:
        servers.append(FakeRtpengine(handler))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


def ok(nth: int, request: dict[str, Value]) -> list[dict[str, Value] | bytes]:
    if request["command"] == b"ping":
        return [{"result": b"pong"}]
    return [{"result": b"ok", "sdp": b"v=0 rewritten"}]


async def test_request_gets_the_reply(fake: Callable[[Handler], FakeRtpengine]) -> None:
    server = fake(ok)
    client = await ng.NgClient.connect(server.address)
    try:
        assert (await client.request(ng.ping()))["result"] == b"pong"
        reply = await client.request(ng.offer("c1", "caller", b"v=0 original"))
        assert reply["sdp"] == b"v=0 rewritten"
    finally:
        await client.close()
    (c1, ping), (c2, offer) = server.received
    assert ping == {"command": b"ping"}
    assert offer == {
        "command": b"offer",
        "call-id": b"c1",
        "from-tag": b"caller",
        "sdp": b"v=0 original",
    }
    assert c1 != c2


async def test_lost_requests_are_retransmitted_with_the_same_cookie(
    fake: Callable[[Handler], FakeRtpengine],
) -> None:
    server = fake(lambda nth, request: [] if nth < 3 else ok(nth, request))
    client = await ng.NgClient.connect(server.address, first_retransmit=0.02)
    try:
        assert (await client.request(ng.ping()))["result"] == b"pong"
    finally:
        await client.close()
    cookies = {cookie for cookie, _ in server.received}
    assert len(server.received) == 3 and len(cookies) == 1


async def test_replies_are_matched_by_cookie(fake: Callable[[Handler], FakeRtpengine]) -> None:
    def stray_first(nth: int, request: dict[str, Value]) -> list[dict[str, Value] | bytes]:
        stray = b"other_1 " + encode({"result": b"ok", "sdp": b"not yours"})
        return [stray, b"garbage", b"x_1 l" + b"e", *ok(nth, request)]

    server = fake(stray_first)
    client = await ng.NgClient.connect(server.address)
    try:
        assert (await client.request(ng.offer("c", "t", b"sdp")))["sdp"] == b"v=0 rewritten"
    finally:
        await client.close()


async def test_concurrent_requests_each_get_their_reply(
    fake: Callable[[Handler], FakeRtpengine],
) -> None:
    def echo(nth: int, request: dict[str, Value]) -> list[dict[str, Value] | bytes]:
        return [{"result": b"ok", "call-id": request["call-id"]}]

    server = fake(echo)
    client = await ng.NgClient.connect(server.address)
    try:
        replies = await asyncio.gather(*(client.request(ng.delete(f"c{i}")) for i in range(20)))
    finally:
        await client.close()
    assert [reply["call-id"] for reply in replies] == [f"c{i}".encode() for i in range(20)]


async def test_error_reply_raises_ng_error(fake: Callable[[Handler], FakeRtpengine]) -> None:
    server = fake(lambda nth, r: [{"result": b"error", "error-reason": b"Unknown call-id"}])
    client = await ng.NgClient.connect(server.address)
    try:
        with pytest.raises(ng.NgError, match="Unknown call-id") as caught:
            await client.request(ng.delete("nope"))
    finally:
        await client.close()
    assert caught.value.command == "delete" and caught.value.reason == "Unknown call-id"
    assert isinstance(caught.value, MediaError)


async def test_unknown_result_is_an_error(fake: Callable[[Handler], FakeRtpengine]) -> None:
    server = fake(lambda nth, r: [{"result": b"maybe"}])
    client = await ng.NgClient.connect(server.address)
    try:
        with pytest.raises(MediaError, match="result b'maybe'"):
            await client.request(ng.ping())
    finally:
        await client.close()


async def test_no_reply_times_out(fake: Callable[[Handler], FakeRtpengine]) -> None:
    server = fake(lambda nth, r: [])
    client = await ng.NgClient.connect(server.address, timeout=0.3, first_retransmit=0.05)
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        with pytest.raises(ng.NgTimeout, match="no reply from rtpengine"):
            await client.request(ng.ping())
    finally:
        await client.close()
    assert 0.25 <= loop.time() - started < 1.0
    assert len(server.received) == 3  # at 0, 0.05 and 0.15 s; the next wait hits 0.3 s


async def test_nobody_listening_times_out() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        address = probe.getsockname()
    client = await ng.NgClient.connect(address, timeout=0.2, first_retransmit=0.05)
    try:
        with pytest.raises(ng.NgTimeout):
            await client.request(ng.ping())
        with pytest.raises(ng.NgTimeout):
            client.request_blocking(ng.ping())
    finally:
        await client.close()


async def test_blocking_request(fake: Callable[[Handler], FakeRtpengine]) -> None:
    server = fake(lambda nth, request: [b"junk", *([] if nth < 2 else ok(nth, request))])
    client = await ng.NgClient.connect(server.address, first_retransmit=0.02)
    try:
        assert client.request_blocking(ng.offer("c", "t", b"x"))["sdp"] == b"v=0 rewritten"
        assert len(server.received) == 2
        server.handler = lambda nth, r: [{"result": b"error", "error-reason": b"bad"}]
        with pytest.raises(ng.NgError, match="bad"):
            client.request_blocking(ng.ping())
    finally:
        await client.close()


async def test_closed_client_refuses_requests(fake: Callable[[Handler], FakeRtpengine]) -> None:
    client = await ng.NgClient.connect(fake(ok).address)
    await client.close()
    with pytest.raises(MediaError, match="closed"):
        await client.request(ng.ping())
    with pytest.raises(MediaError, match="closed"):
        client.request_blocking(ng.ping())


async def test_close_fails_requests_in_flight(fake: Callable[[Handler], FakeRtpengine]) -> None:
    client = await ng.NgClient.connect(fake(lambda n, r: []).address)
    pending = asyncio.ensure_future(client.request(ng.ping()))
    await asyncio.sleep(0.02)
    await client.close()
    with pytest.raises(MediaError, match="closed"):
        await pending


def test_commands() -> None:
    play = ng.play_media("c", "caller", file="/a.wav", repeat_times=2)
    assert play.name == "play media"
    assert play.args == {"call-id": "c", "from-tag": "caller", "file": "/a.wav", "repeat-times": 2}
    assert ng.play_media("c", "caller", blob=b"RIFF").args["blob"] == b"RIFF"
    with pytest.raises(ValueError, match="exactly one"):
        ng.play_media("c", "caller")
    with pytest.raises(ValueError, match="repeat_times"):
        ng.play_media("c", "caller", file="/a.wav", repeat_times=0)
    assert ng.answer("c", "a", "b", b"s").args["to-tag"] == "b"
    assert ng.start_recording("c", file="/r.wav").args["recording-file"] == "/r.wav"
    assert ng.block_media("c", "a").name == "block media"
    assert ng.ping().message(b"k_1") == b"k_1 d7:command4:pinge"


def test_decode_message() -> None:
    assert ng.decode_message(b"k_1 d6:result4:ponge") == (b"k_1", {"result": b"pong"})
    for bad in (b"d6:result4:ponge", b" d6:result4:ponge", b"k_1 i1e", b"k_1 d6:res"):
        with pytest.raises(MediaError):
            ng.decode_message(bad)


def test_parse_dtmf_log() -> None:
    event = {"callid": "c1", "source_tag": "caller", "tags": ["a", "b"], "event": 11}
    assert ng.parse_dtmf_log(json.dumps(event).encode()) == ng.DtmfLogEvent("c1", "caller", "#")
    assert ng.parse_dtmf_log(json.dumps({**event, "event": 0}).encode()).digit == "0"
    assert ng.parse_dtmf_log(json.dumps({**event, "event": 15}).encode()).digit == "D"
    for bad in (
        b"not json",
        b"\xff",
        b"[1]",
        json.dumps({**event, "event": 16}).encode(),
        json.dumps({**event, "event": True}).encode(),
        json.dumps({"source_tag": "caller", "event": 1}).encode(),
    ):
        with pytest.raises(MediaError):
            ng.parse_dtmf_log(bad)
