"""The rtpengine backend against a real rtpengine on loopback (tests/support/rtpengine.py).

A Python UDP socket plays the far end: it offers or answers SDP, counts the prompt packets
rtpengine sends it (and their spacing), and sends RFC 4733 key presses and audio.
"""

from __future__ import annotations

import asyncio
import select
import socket
import statistics
import struct
import time
import wave
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.media.conftest import tone, write_wav
from tests.support.rtpengine import RtpengineDaemon, require_rtpengine
from voiceplane.media import g711, ng
from voiceplane.media.backend import RecordingEnd
from voiceplane.media.errors import MediaError
from voiceplane.media.rtp import RtpPacket, TelephoneEvent, is_rtcp
from voiceplane.media.rtpengine import RtpengineMedia, RtpengineSession
from voiceplane.sip.sdp import PCMU, TELEPHONE_EVENT, Codec, SessionDescription, make_answer
from voiceplane.sip.sdp import make_offer as sdp_offer

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux; Python 3.11 lacks the name


@pytest.fixture(scope="module")
def daemon() -> Iterator[RtpengineDaemon]:
    require_rtpengine()
    with RtpengineDaemon(ports=200) as running:
        yield running


@pytest.fixture
async def media(daemon: RtpengineDaemon) -> AsyncIterator[RtpengineMedia]:
    backend = RtpengineMedia(daemon.ng, dtmf_log=daemon.dtmf_log)
    await backend.start()
    yield backend
    await backend.close()


@dataclass
class Phone:
    """The far end: a UDP socket that records what arrives and when."""

    sock: socket.socket
    arrivals: list[tuple[float, RtpPacket]] = field(default_factory=list)
    target: tuple[str, int] | None = None  # where rtpengine wants our RTP
    _sequence: int = 1000
    _timestamp: int = 8000

    @classmethod
    def open(cls) -> Phone:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        return cls(sock)

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    def offer(self, codecs: tuple[Codec, ...] = (PCMU, TELEPHONE_EVENT)) -> bytes:
        return sdp_offer(address="127.0.0.1", port=self.port, session_id=7, codecs=codecs).encode()

    def answer(self, offer: bytes) -> bytes:
        sdp = SessionDescription.parse(offer)
        ours = make_answer(sdp, address="127.0.0.1", port=self.port, session_id=8)
        self.learn(offer)
        return ours.encode()

    def learn(self, sdp: bytes) -> None:
        self.target = SessionDescription.parse(sdp).rtp_address()

    async def collect(self, seconds: float) -> None:
        """Receive for ``seconds``, each packet with the kernel's arrival time."""
        await asyncio.to_thread(receive, self.sock, seconds, self.arrivals)

    def send_audio(self, pcm: bytes) -> None:
        for offset in range(0, len(pcm), 320):
            self._send(0, g711.ulaw_encode(pcm[offset : offset + 320]))
            self._timestamp += 160

    async def press(self, digit: str) -> None:
        """One key press as a phone sends it: start, updates, three end packets."""
        start = self._timestamp
        for step in range(1, 7):
            end = step > 3
            event = TelephoneEvent.from_digit(digit, end=end, duration=160 * min(step, 4))
            self._send(101, event.encode(), timestamp=start, marker=step == 1)
            await asyncio.sleep(0.02)
        self._timestamp += 160 * 4

    def _send(
        self, pt: int, payload: bytes, *, timestamp: int | None = None, marker: bool = False
    ) -> None:
        assert self.target is not None
        packet = RtpPacket(
            payload_type=pt,
            sequence=self._sequence,
            timestamp=self._timestamp if timestamp is None else timestamp,
            ssrc=0x1234,
            payload=payload,
            marker=marker,
        )
        self._sequence += 1
        self.sock.sendto(packet.encode(), self.target)

    def close(self) -> None:
        self.sock.close()


def receive(sock: socket.socket, seconds: float, into: list[tuple[float, RtpPacket]]) -> None:
    """Packets arriving on ``sock`` for ``seconds``, stamped by the kernel on arrival.

    Kernel timestamps (SO_TIMESTAMPNS) measure rtpengine's pacing, not how promptly this
    busy machine got round to reading the socket.
    """
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        if not select.select([sock], [], [], left)[0]:
            break
        data, ancillary, _, _ = sock.recvmsg(2048, socket.CMSG_SPACE(16))
        if is_rtcp(data):  # rtpengine's RTCP goes to port + 1: another phone's port, maybe
            continue
        stamp = time.time()
        for level, kind, value in ancillary:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                seconds_part, nanoseconds = struct.unpack("qq", value[:16])
                stamp = seconds_part + nanoseconds / 1e9
        into.append((stamp, RtpPacket.parse(data)))


@pytest.fixture
def phone() -> Iterator[Phone]:
    far_end = Phone.open()
    yield far_end
    far_end.close()


async def incoming(media: RtpengineMedia, phone: Phone) -> RtpengineSession:
    session = await media.open_session()
    phone.learn(session.answer(phone.offer()))
    return session


def intervals_ms(phone: Phone) -> list[float]:
    times = [at for at, _ in phone.arrivals]
    return [(b - a) * 1000 for a, b in zip(times, times[1:], strict=False)]


# --------------------------------------------------------------------------- tests


async def test_ping(daemon: RtpengineDaemon) -> None:
    client = await ng.NgClient.connect(daemon.ng)
    try:
        assert (await client.request(ng.ping()))["result"] == b"pong"
    finally:
        await client.close()


async def test_incoming_answer_points_the_caller_at_rtpengine(
    media: RtpengineMedia, phone: Phone, daemon: RtpengineDaemon
) -> None:
    session = await media.open_session()
    answer = SessionDescription.parse(session.answer(phone.offer()))
    address = answer.rtp_address()
    assert address is not None
    host, port = address
    assert host == "127.0.0.1" and daemon.port_range[0] <= port <= daemon.port_range[1]
    assert answer.audio is not None
    assert [c.name for c in answer.audio.voice_codecs] == ["PCMU"]
    assert answer.telephone_event_pt == 101
    await session.close()


async def test_play_reaches_the_caller_paced_at_20_ms(
    media: RtpengineMedia, phone: Phone
) -> None:
    session = await incoming(media, phone)
    loop = asyncio.get_running_loop()
    started = loop.time()
    listening = asyncio.ensure_future(phone.collect(2.0))
    await session.play(tone(1.0))
    assert 0.9 <= loop.time() - started <= 1.5  # play returns when the prompt is over
    await listening
    packets = [packet for _, packet in phone.arrivals]
    assert 48 <= len(packets) <= 52  # 1 s of 20 ms frames
    assert {packet.payload_type for packet in packets} == {0}
    assert {len(packet.payload) for packet in packets} == {160}
    gaps = intervals_ms(phone)
    assert 19 <= statistics.median(gaps) <= 21
    # Paced, not bursty (a WAV file would come in 10 ms bursts and 100 ms gaps): most gaps
    # within 5 ms of 20 ms even on a loaded machine.
    assert sum(15 <= gap <= 25 for gap in gaps) >= 0.9 * len(gaps)
    decoded = g711.ulaw_decode(b"".join(packet.payload for packet in packets))
    assert max(abs(s) for s in memoryview(decoded).cast("h")) > 4000  # the tone, not silence
    await session.close()


async def test_outgoing_offer_and_answer(media: RtpengineMedia, phone: Phone) -> None:
    session = await media.open_session()
    offer = session.offer()
    assert SessionDescription.parse(offer).rtp_address() is not None
    session.accept_answer(phone.answer(offer))
    listening = asyncio.ensure_future(phone.collect(0.8))
    await session.play(tone(0.4))
    await listening
    assert 18 <= len(phone.arrivals) <= 22
    await session.close()


async def test_play_file(
    media: RtpengineMedia, phone: Phone, tmp_path: Path, sox: None
) -> None:
    session = await incoming(media, phone)
    path = write_wav(tmp_path / "prompt.wav", tone(0.5, rate=16000), rate=16000)
    listening = asyncio.ensure_future(phone.collect(1.0))
    await session.play_file(path)
    await listening
    assert 23 <= len(phone.arrivals) <= 27
    with pytest.raises(MediaError, match="not found"):
        await session.play_file(tmp_path / "missing.wav")
    (tmp_path / "junk.wav").write_bytes(b"not audio at all")
    with pytest.raises(MediaError, match="sox cannot convert"):
        await session.play_file(tmp_path / "junk.wav")
    await session.close()


async def test_prompts_queue_one_after_the_other(media: RtpengineMedia, phone: Phone) -> None:
    session = await incoming(media, phone)
    loop = asyncio.get_running_loop()
    started = loop.time()
    listening = asyncio.ensure_future(phone.collect(1.4))
    await asyncio.gather(session.play(tone(0.4)), session.play(tone(0.4, frequency=880)))
    assert loop.time() - started >= 0.75
    await listening
    assert 38 <= len(phone.arrivals) <= 42
    await session.close()


async def test_close_ends_a_prompt_early_and_deletes_the_call(
    media: RtpengineMedia, phone: Phone
) -> None:
    session = await incoming(media, phone)
    loop = asyncio.get_running_loop()
    playing = asyncio.ensure_future(session.play(tone(5.0)))
    await asyncio.sleep(0.3)
    started = loop.time()
    await session.close()
    await asyncio.wait_for(playing, 1.0)
    assert loop.time() - started < 0.5
    with pytest.raises(ng.NgError, match="Unknown call-id"):
        await media.client.request(ng.query(session.call_id))
    await session.close()  # twice is fine
    await session.play(tone(0.1))  # and playing on a closed session does nothing


async def test_digits_from_the_dtmf_log(media: RtpengineMedia, phone: Phone) -> None:
    session = await incoming(media, phone)
    phone.send_audio(tone(0.1))
    for digit in "5#":
        await phone.press(digit)
    digits = session.dtmf()
    assert await asyncio.wait_for(digits.get(), 2.0) == "5"
    assert await asyncio.wait_for(digits.get(), 2.0) == "#"
    assert digits.empty()
    await session.close()


async def test_digits_are_routed_to_their_session(media: RtpengineMedia) -> None:
    phones = [Phone.open(), Phone.open()]
    try:
        sessions = [await incoming(media, far_end) for far_end in phones]
        await phones[1].press("7")
        await phones[0].press("1")
        assert await asyncio.wait_for(sessions[0].dtmf().get(), 2.0) == "1"
        assert await asyncio.wait_for(sessions[1].dtmf().get(), 2.0) == "7"
        for session in sessions:
            assert session.dtmf().empty()
            await session.close()
    finally:
        for far_end in phones:
            far_end.close()


async def test_record_until_a_stop_key(
    media: RtpengineMedia, phone: Phone, tmp_path: Path
) -> None:
    session = await incoming(media, phone)
    assert session.packets_received == 0  # nothing is relayed to us outside a recording
    recording = asyncio.ensure_future(session.record(tmp_path / "vm.wav", 5.0, "#"))
    await asyncio.sleep(0.2)
    for _ in range(25):  # 0.5 s of speech, in real time
        phone.send_audio(tone(0.02))
        await asyncio.sleep(0.02)
    await phone.press("#")
    result = await asyncio.wait_for(recording, 3.0)
    assert result.ended_by is RecordingEnd.DIGIT and result.digit == "#"
    assert session.dtmf().empty()  # the stop key is the result, not a digit
    assert 0.3 <= result.duration <= 1.2
    with wave.open(str(result.path), "rb") as wav:
        assert wav.getframerate() == 8000 and wav.getnframes() > 2400
    received = session.packets_received
    assert received >= 20
    phone.send_audio(tone(0.2))  # after the recording: blocked again
    await asyncio.sleep(0.3)
    assert session.packets_received == received
    await session.close()


async def test_record_stops_at_max_length(
    media: RtpengineMedia, phone: Phone, tmp_path: Path
) -> None:
    session = await incoming(media, phone)
    result = await asyncio.wait_for(session.record(tmp_path / "vm.wav", 0.3), 2.0)
    assert result.ended_by is RecordingEnd.MAX_LENGTH
    await session.close()


async def test_an_offer_without_g711_is_refused(media: RtpengineMedia, phone: Phone) -> None:
    session = await media.open_session()
    g722 = Codec(9, "G722", 8000)
    with pytest.raises(MediaError, match="no usable audio"):
        session.answer(phone.offer(codecs=(g722,)))
    call_id = session.call_id
    await session.close()
    with pytest.raises(ng.NgError):  # the half-made rtpengine call went with the session
        await media.client.request(ng.query(call_id))


async def test_misuse_is_a_clear_error(media: RtpengineMedia, phone: Phone) -> None:
    session = await media.open_session()
    with pytest.raises(MediaError, match="accept an answer in state idle"):
        session.accept_answer(phone.offer())
    with pytest.raises(MediaError, match="cannot play in state idle"):
        await session.play(tone(0.1))
    with pytest.raises(MediaError, match="odd length"):
        await session.play(b"\x00")
    with pytest.raises(MediaError, match="unreadable SDP offer"):
        session.answer(b"not sdp")
    with pytest.raises(MediaError, match="max_s"):
        await session.record("/tmp/x.wav", 0)
    await session.close()


async def test_backend_lifecycle(daemon: RtpengineDaemon) -> None:
    backend = RtpengineMedia(daemon.ng)
    with pytest.raises(MediaError, match="not started"):
        await backend.open_session()
    await backend.start()
    session = await backend.open_session()
    session.answer(Phone.open().offer())
    await backend.close()  # closes the session and deletes its call
    with pytest.raises(MediaError, match="closed"):
        await backend.open_session()


async def test_start_fails_clearly_without_rtpengine() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        address = probe.getsockname()
    backend = RtpengineMedia(address, ng_timeout=0.3)
    with pytest.raises(ng.NgTimeout, match="no reply from rtpengine"):
        await backend.start()
    await backend.close()


def test_host_must_be_reachable() -> None:
    with pytest.raises(ValueError, match="IP address"):
        RtpengineMedia(("127.0.0.1", 2223), host="localhost")
    with pytest.raises(ValueError, match="reach"):
        RtpengineMedia(("127.0.0.1", 2223), host="0.0.0.0")


async def test_a_re_offer_moves_the_stream(media: RtpengineMedia, phone: Phone) -> None:
    session = await incoming(media, phone)
    moved = Phone.open()
    try:
        # The caller's re-INVITE: same call, media now at another port.
        moved.learn(session.answer(moved.offer()))
        listening = asyncio.ensure_future(moved.collect(0.8))
        await session.play(tone(0.4))
        await listening
        assert 18 <= len(moved.arrivals) <= 22
    finally:
        moved.close()
        await session.close()


async def test_a_cancelled_prompt_stops(media: RtpengineMedia, phone: Phone) -> None:
    session = await incoming(media, phone)
    playing = asyncio.ensure_future(session.play(tone(5.0)))
    await asyncio.sleep(0.5)
    playing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await playing
    await asyncio.sleep(0.3)  # stop media is sent in the background
    await phone.collect(0.2)  # what was sent before the stop
    phone.arrivals.clear()
    await phone.collect(0.5)
    assert phone.arrivals == []
    await session.close()


async def test_a_prompt_is_written_once_for_every_session_that_plays_it(
    media: RtpengineMedia,
) -> None:
    phones = [Phone.open(), Phone.open()]
    try:
        sessions = [await incoming(media, far_end) for far_end in phones]
        listening = [asyncio.ensure_future(far_end.collect(0.9)) for far_end in phones]
        await asyncio.gather(*(session.play(tone(0.4)) for session in sessions))
        await asyncio.gather(*listening)
        for far_end in phones:  # both callers heard it all
            assert 18 <= len(far_end.arrivals) <= 22
        folder = media.prompt_folder
        assert folder is not None
        assert len(list(folder.iterdir())) == 1  # one file, played twice
        await sessions[0].play(tone(0.1, frequency=880))
        assert len(list(folder.iterdir())) == 2  # another prompt, another file
        for session in sessions:
            await session.close()
    finally:
        for far_end in phones:
            far_end.close()
    await media.close()
    assert not folder.exists()


async def test_the_least_recently_played_prompt_file_goes_first(
    media: RtpengineMedia, phone: Phone, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("voiceplane.media.rtpengine.PROMPT_FILES", 2)
    session = await incoming(media, phone)
    folder = media.prompt_folder
    assert folder is not None
    low, middle, high = (tone(0.05, frequency=hz) for hz in (300, 600, 900))
    await session.play(low)
    (low_file,) = folder.iterdir()
    await session.play(middle)
    (middle_file,) = set(folder.iterdir()) - {low_file}
    await session.play(low)  # played again: now the most recent
    await session.play(high)  # a third prompt: the middle one's file goes
    files = set(folder.iterdir())
    assert len(files) == 2 and low_file in files and middle_file not in files
    listening = asyncio.ensure_future(phone.collect(0.3))
    await session.play(middle)  # written again, and played
    await listening
    assert len(phone.arrivals) >= 2
    await session.close()


async def test_rtcp_on_the_dtmf_log_port_is_dropped_quietly(
    media: RtpengineMedia, caplog: pytest.LogCaptureFixture
) -> None:
    address = media.dtmf_log_address
    assert address is not None
    sender_report = bytes([0x80, 200, 0, 6]) + bytes(24)  # an RTCP SR, as rtpengine sends
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(sender_report, address)
        sock.sendto(b"not json", address)
    await asyncio.sleep(0.2)
    dropped = [r.getMessage() for r in caplog.records if "DTMF log datagram" in r.getMessage()]
    assert len(dropped) == 1 and "not JSON" in dropped[0]  # only the garbage is reported
