"""The embedded backend: SDP through its sessions, and real RTP over loopback."""

from __future__ import annotations

import asyncio
import math
import os
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import pytest

from voiceplane.media import g711
from voiceplane.media.backend import MediaBackend, MediaError, MediaSession
from voiceplane.media.embedded import EmbeddedMedia, EmbeddedSession
from voiceplane.media.rtp import RtpPacket, TelephoneEvent
from voiceplane.media.tts import speak
from voiceplane.sip.sdp import (
    PCMA,
    PCMU,
    RECVONLY,
    SENDONLY,
    SENDRECV,
    TELEPHONE_EVENT,
    Codec,
    SessionDescription,
    make_answer,
    make_offer,
)

from .conftest import correlation, tone

HOST = "127.0.0.1"
FRAME = 160  # samples in 20 ms at 8 kHz


@dataclass
class Peer(asyncio.DatagramProtocol):
    """A plain UDP socket standing in for the far end."""

    packets: list[tuple[float, RtpPacket]] = field(default_factory=list)
    transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's UDP transport is not a subclass of asyncio's, so no isinstance here.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.packets.append((asyncio.get_running_loop().time(), RtpPacket.parse(data)))

    @property
    def port(self) -> int:
        assert self.transport is not None
        return int(self.transport.get_extra_info("sockname")[1])

    def send(self, packet: RtpPacket, port: int) -> None:
        assert self.transport is not None
        self.transport.sendto(packet.encode(), (HOST, port))

    def answer(self, offer: bytes, **kwargs: object) -> bytes:
        """The SDP answer of a phone listening on this socket."""
        sdp = make_answer(
            SessionDescription.parse(offer), address=HOST, port=self.port, session_id=9,
            **kwargs,  # type: ignore[arg-type]
        )  # fmt: skip
        return sdp.encode()


@pytest.fixture
async def media() -> AsyncIterator[EmbeddedMedia]:
    backend = EmbeddedMedia(HOST, (20000, 30000))
    yield backend
    await backend.close()


@pytest.fixture
async def peer() -> AsyncIterator[Peer]:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(Peer, local_addr=(HOST, 0))
    yield protocol
    transport.close()


async def connected(media: EmbeddedMedia, peer: Peer, **answer: object) -> EmbeddedSession:
    session = await media.open_session()
    session.accept_answer(peer.answer(session.offer(), **answer))
    return session


async def until(condition: object, timeout: float = 2.0) -> None:
    assert callable(condition)
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


def pcm_of(packets: list[tuple[float, RtpPacket]], decode: object) -> bytes:
    assert callable(decode)
    return b"".join(decode(p.payload) for _, p in packets)


def test_it_is_a_media_backend() -> None:
    backend: MediaBackend = EmbeddedMedia(HOST)
    assert isinstance(backend, EmbeddedMedia)


# --------------------------------------------------------------------------- ports


@pytest.mark.parametrize(
    ("host", "ports", "message"),
    [
        ("0.0.0.0", (20000, 30000), "reachable address"),
        ("::", (20000, 30000), "reachable address"),
        ("localhost", (20000, 30000), "IP address"),
        (HOST, (30000, 20000), "bad RTP port range"),
        (HOST, (0, 100), "bad RTP port range"),
        (HOST, (20001, 20001), "no even port"),
    ],
)
def test_bad_settings(host: str, ports: tuple[int, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        EmbeddedMedia(host, ports)


async def test_sessions_get_distinct_even_ports_in_the_range(media: EmbeddedMedia) -> None:
    sessions = [await media.open_session() for _ in range(4)]
    ports = [s.local_port for s in sessions]
    assert len(set(ports)) == 4
    assert all(p % 2 == 0 and 20000 <= p <= 30000 for p in ports)


async def test_a_full_range_is_a_media_error() -> None:
    backend = EmbeddedMedia(HOST, (31000, 31003))  # two even ports
    sessions: list[MediaSession] = []
    try:
        with pytest.raises(MediaError, match="no free RTP port"):
            for _ in range(3):
                sessions.append(await backend.open_session())
        # Whatever else runs on this machine, the range never gave more than its two ports.
        assert len(sessions) <= 2
        assert {s.local_port for s in sessions} <= {31000, 31002}
    finally:
        await backend.close()


def bind_even_port(sock: socket.socket) -> int:
    for port in range(33000, 34000, 2):
        try:
            sock.bind((HOST, port))
        except OSError:
            continue
        return port
    raise AssertionError("no free even port in 33000-34000")


async def test_a_port_in_use_is_skipped() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        port = bind_even_port(taken)
        backend = EmbeddedMedia(HOST, (port, port + 2))
        try:
            session = await backend.open_session()
            assert session.local_port == port + 2
        finally:
            await backend.close()


async def test_closing_the_backend_closes_and_frees_every_session() -> None:
    backend = EmbeddedMedia(HOST, (32000, 32999))
    ports = [(await backend.open_session()).local_port for _ in range(2)]
    await backend.close()
    await asyncio.sleep(0)
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind((HOST, port))  # would fail if the session still held it
    with pytest.raises(MediaError, match="closed"):
        await backend.open_session()


# --------------------------------------------------------------------------- SDP


async def test_the_offer(media: EmbeddedMedia) -> None:
    session = await media.open_session()
    offer = SessionDescription.parse(session.offer())
    assert offer.rtp_address() == (HOST, session.local_port)
    audio = offer.audio
    assert audio is not None
    names = [(c.name, c.clock_rate) for c in audio.codecs]
    assert names == [("PCMU", 8000), ("PCMA", 8000), ("telephone-event", 8000)]


async def test_an_unchanged_reoffer_keeps_its_version(media: EmbeddedMedia, peer: Peer) -> None:
    session = await connected(media, peer)
    first = SessionDescription.parse(session.offer())
    again = SessionDescription.parse(session.offer())
    assert again.session_version == first.session_version
    assert again.session_id == first.session_id


async def test_the_answer_picks_the_peer_codec(media: EmbeddedMedia, peer: Peer) -> None:
    session = await connected(media, peer, supported=(PCMA, TELEPHONE_EVENT))
    assert session.negotiated is not None
    assert session.negotiated.codec.name == "PCMA"
    assert session.negotiated.remote_port == peer.port


@pytest.mark.parametrize(
    "answer",
    [b"", b"not sdp", b"v=0\r\n"],
)
async def test_an_unreadable_answer(media: EmbeddedMedia, answer: bytes) -> None:
    session = await media.open_session()
    session.offer()
    with pytest.raises(MediaError, match="unreadable SDP answer"):
        session.accept_answer(answer)


async def test_an_answer_without_our_codecs(media: EmbeddedMedia) -> None:
    session = await media.open_session()
    session.offer()
    g729 = make_offer(address=HOST, port=40000, session_id=1, codecs=(Codec(18, "G729", 8000),))
    with pytest.raises(MediaError, match="no audio stream"):
        session.accept_answer(g729.encode())


async def test_answering_an_incoming_offer(media: EmbeddedMedia) -> None:
    session = await media.open_session()
    offer = make_offer(
        address=HOST, port=40000, session_id=1,
        codecs=(Codec(18, "G729", 8000), PCMA, Codec(96, "telephone-event", 8000, fmtp="0-15")),
    )  # fmt: skip
    answer = SessionDescription.parse(session.answer(offer.encode()))
    assert answer.audio is not None
    assert [c.name for c in answer.audio.codecs] == ["PCMA", "telephone-event"]
    assert answer.telephone_event_pt == 96  # the offerer's number
    assert session.negotiated is not None and session.negotiated.codec == PCMA


async def test_an_offer_without_g711_is_refused(media: EmbeddedMedia) -> None:
    session = await media.open_session()
    offer = make_offer(address=HOST, port=40000, session_id=1, codecs=(Codec(9, "G722", 8000),))
    with pytest.raises(MediaError, match="no usable audio"):
        session.answer(offer.encode())
    with pytest.raises(MediaError, match="before the SDP offer/answer"):
        await session.play(tone(0.1))


async def test_out_of_order_calls_are_refused(media: EmbeddedMedia, peer: Peer) -> None:
    session = await media.open_session()
    with pytest.raises(MediaError, match="cannot accept an answer in state idle"):
        session.accept_answer(b"v=0\r\n")
    with pytest.raises(MediaError, match="before the SDP offer/answer"):
        await session.play(tone(0.1))
    offer = session.offer()
    with pytest.raises(MediaError, match="cannot answer an offer in state offered"):
        session.answer(offer)
    with pytest.raises(MediaError, match="odd length"):
        await session.play(b"\x00")


# --------------------------------------------------------------------------- playing


@pytest.mark.parametrize(
    ("supported", "payload_type", "decode"),
    [
        ((PCMU, TELEPHONE_EVENT), 0, g711.ulaw_decode),
        ((PCMA, TELEPHONE_EVENT), 8, g711.alaw_decode),
    ],
)
async def test_one_second_of_tone_is_fifty_paced_packets(
    media: EmbeddedMedia,
    peer: Peer,
    supported: tuple[Codec, ...],
    payload_type: int,
    decode: object,
) -> None:
    session = await connected(media, peer, supported=supported)
    sent = tone(1.0)
    loop = asyncio.get_running_loop()
    began = loop.time()
    await session.play(sent)
    took = loop.time() - began
    await until(lambda: len(peer.packets) >= 50)
    await asyncio.sleep(0.05)  # nothing more may come

    packets = [p for _, p in peer.packets]
    assert len(packets) == 50
    assert took >= 0.9
    first = packets[0]
    for i, packet in enumerate(packets):
        assert packet.payload_type == payload_type
        assert packet.ssrc == first.ssrc
        assert packet.sequence == (first.sequence + i) % 65536
        assert packet.timestamp == (first.timestamp + i * FRAME) % 2**32
        assert packet.marker == (i == 0)
        assert len(packet.payload) == FRAME
    assert correlation(pcm_of(peer.packets, decode), sent) > 0.99
    # Loosely paced: the packets are spread over the second, not sent in a burst.
    spread = peer.packets[-1][0] - peer.packets[0][0]
    assert spread >= 0.9


async def test_a_second_prompt_continues_the_stream(media: EmbeddedMedia, peer: Peer) -> None:
    session = await connected(media, peer)
    await session.play(tone(0.1))
    await asyncio.sleep(0.2)
    await session.play(tone(0.1))
    await until(lambda: len(peer.packets) >= 10)
    packets = [p for _, p in peer.packets]
    assert [p.marker for p in packets] == [True] + [False] * 4 + [True] + [False] * 4
    assert len({p.ssrc for p in packets}) == 1
    assert [(p.sequence - packets[0].sequence) % 65536 for p in packets] == list(range(10))
    # The timestamp kept running through the silence between the prompts (about 0.2 s).
    gap = (packets[5].timestamp - packets[4].timestamp) % 2**32
    assert 0.15 * 8000 < gap < 1.0 * 8000


async def test_a_partial_last_frame_is_padded_with_silence(
    media: EmbeddedMedia, peer: Peer
) -> None:
    session = await connected(media, peer)
    await session.play(tone(0.03))  # one and a half frames
    await until(lambda: len(peer.packets) >= 2)
    last = peer.packets[1][1]
    assert len(last.payload) == FRAME
    assert last.payload[80:] == bytes([g711.ULAW_SILENCE]) * 80


async def test_closing_mid_play_stops_it_quietly(media: EmbeddedMedia, peer: Peer) -> None:
    session = await connected(media, peer)
    playing = asyncio.create_task(session.play(tone(5.0)))
    await until(lambda: len(peer.packets) >= 3)
    loop = asyncio.get_running_loop()
    closed_at = loop.time()
    await session.close()
    async with asyncio.timeout(1.0):
        await playing  # no exception, and well before the five seconds
    assert loop.time() - closed_at < 0.5
    count = len(peer.packets)
    await asyncio.sleep(0.1)
    assert len(peer.packets) == count < 50
    await session.play(tone(0.5))  # a closed session plays nothing, without error
    await session.close()  # twice is fine


async def test_nothing_is_sent_to_a_peer_that_holds(media: EmbeddedMedia, peer: Peer) -> None:
    session = await connected(media, peer, direction=SENDONLY)  # the peer will not listen
    assert session.negotiated is not None and session.negotiated.direction == RECVONLY
    await session.play(tone(0.1))
    await asyncio.sleep(0.1)
    assert peer.packets == []


async def test_a_reoffer_takes_the_call_off_hold(media: EmbeddedMedia, peer: Peer) -> None:
    session = await media.open_session()
    held = make_offer(address=HOST, port=peer.port, session_id=5, direction=SENDONLY)
    first = SessionDescription.parse(session.answer(held.encode()))
    assert first.audio_direction == RECVONLY
    await session.play(tone(0.06))
    await asyncio.sleep(0.05)
    assert peer.packets == []

    resumed = make_offer(address=HOST, port=peer.port, session_id=5, session_version=2)
    second = SessionDescription.parse(session.answer(resumed.encode()))
    assert second.audio_direction == SENDRECV
    assert second.session_version == first.session_version + 1  # the answer changed
    await session.play(tone(0.06))
    await until(lambda: len(peer.packets) >= 3)
    packets = [p for _, p in peer.packets]
    # Nothing was sent while held, so the sequence has no gap; the timestamp ran on.
    assert [(p.sequence - packets[0].sequence) % 65536 for p in packets] == [0, 1, 2]
    assert [(p.timestamp - packets[0].timestamp) % 2**32 for p in packets] == [0, 160, 320]


async def test_session_to_session(media: EmbeddedMedia) -> None:
    caller = await media.open_session()
    callee = await media.open_session()
    caller.accept_answer(callee.answer(caller.offer()))
    await asyncio.gather(caller.play(tone(1.0)), callee.play(tone(0.5)))
    await until(lambda: callee.packets_received >= 50 and caller.packets_received >= 25)
    await asyncio.sleep(0.05)
    assert (callee.packets_received, caller.packets_received) == (50, 25)


@pytest.mark.usefixtures("espeak_ng")
async def test_playing_real_speech(media: EmbeddedMedia, peer: Peer, tmp_path: Path) -> None:
    speech = await speak("Welcome to voiceplane. Goodbye.", tmp_path)
    session = await connected(media, peer)
    await session.play(speech)
    frames = math.ceil(len(speech) / (2 * FRAME))
    await until(lambda: len(peer.packets) >= frames)
    assert len(peer.packets) == frames
    assert correlation(pcm_of(peer.packets, g711.ulaw_decode), speech) > 0.99


# --------------------------------------------------------------------------- receiving


def key_press(digit: str, timestamp: int, sequence: int, payload_type: int = 101) -> list[bytes]:
    """What a phone sends for one key: three updates, then the end packet three times."""
    packets = []
    for i, duration in enumerate((160, 320, 480, 640, 640, 640)):
        event = TelephoneEvent.from_digit(digit, end=i >= 3, duration=duration)
        packets.append(
            RtpPacket(
                payload_type, (sequence + i) % 65536, timestamp, 0xCAFE, event.encode(),
                marker=i == 0,
            ).encode()
        )  # fmt: skip
    return packets


async def test_dtmf_digits_come_out_once_each(media: EmbeddedMedia, peer: Peer) -> None:
    session = await connected(media, peer)
    assert peer.transport is not None
    datagrams: list[bytes] = []
    for n, digit in enumerate("12#1"):
        datagrams += key_press(digit, 8000 * (n + 1), 6 * n)
    flash = TelephoneEvent(event=16, end=True).encode()
    datagrams.append(RtpPacket(101, 100, 99999, 0xCAFE, flash).encode())
    datagrams.append(RtpPacket(0, 101, 99999, 0xCAFE, b"\xff" * 160).encode())  # audio
    junk = [b"junk", bytes([0x80, 200]) + bytes(6)]  # not RTP; RTCP
    for data in datagrams + junk:
        peer.transport.sendto(data, (HOST, session.local_port))
    await until(lambda: session.packets_received >= len(datagrams))
    await asyncio.sleep(0.05)
    digits = session.dtmf()
    got = [digits.get_nowait() for _ in range(digits.qsize())]
    assert got == ["1", "2", "#", "1"]
    assert session.packets_received == len(datagrams)  # junk and RTCP are not counted
    assert session.dtmf() is digits


async def test_dtmf_with_the_peer_own_payload_type(media: EmbeddedMedia, peer: Peer) -> None:
    # The peer's answer names telephone-event 100; it sends with that, not our 101.
    session = await media.open_session()
    offer = SessionDescription.parse(session.offer())
    answer = make_offer(
        address=HOST, port=peer.port, session_id=3,
        codecs=(PCMU, Codec(100, "telephone-event", 8000, fmtp="0-15")),
    )  # fmt: skip
    session.accept_answer(answer.encode())
    assert offer.telephone_event_pt == 101
    assert peer.transport is not None
    for data in key_press("9", 1234, 0, payload_type=100) + key_press("5", 5678, 6):
        peer.transport.sendto(data, (HOST, session.local_port))
    digits = session.dtmf()
    async with asyncio.timeout(2):
        assert [await digits.get(), await digits.get()] == ["9", "5"]


async def test_dtmf_of_an_incoming_call(media: EmbeddedMedia, peer: Peer) -> None:
    session = await media.open_session()
    offer = make_offer(
        address=HOST, port=peer.port, session_id=5,
        codecs=(PCMA, Codec(96, "telephone-event", 8000, fmtp="0-16")),
    )  # fmt: skip
    session.answer(offer.encode())
    assert peer.transport is not None
    for data in key_press("*", 4444, 0, payload_type=96):
        peer.transport.sendto(data, (HOST, session.local_port))
    async with asyncio.timeout(2):
        assert await session.dtmf().get() == "*"


SIPP_DTMF = Path("/usr/share/sip-tester")


def rtp_of_pcap(path: Path) -> list[bytes]:
    """The UDP payloads of a classic little-endian pcap of Ethernet/IPv4/UDP frames."""
    data = path.read_bytes()
    assert data[:4] == bytes.fromhex("d4c3b2a1"), "not a little-endian pcap"
    payloads, offset = [], 24
    while offset < len(data):
        captured = int.from_bytes(data[offset + 8 : offset + 12], "little")
        frame = data[offset + 16 : offset + 16 + captured]
        offset += 16 + captured
        ip = frame[14:]
        payloads.append(ip[(ip[0] & 0x0F) * 4 + 8 :])
    return payloads


async def test_dtmf_captured_from_a_phone(media: EmbeddedMedia, peer: Peer) -> None:
    """SIPp's RFC 4733 captures (payload type 101, three end packets with one sequence
    number): all ten keys, each once."""
    captures = [SIPP_DTMF / f"dtmf_2833_{digit}.pcap" for digit in range(10)]
    if not all(c.is_file() for c in captures):
        if os.environ.get("CI"):
            pytest.fail(f"SIPp's DTMF captures are missing from {SIPP_DTMF} (sip-tester)")
        pytest.skip(f"SIPp's DTMF captures are not in {SIPP_DTMF}")
    session = await connected(media, peer)
    assert peer.transport is not None
    sent = 0
    for capture in captures:
        for data in rtp_of_pcap(capture):
            peer.transport.sendto(data, (HOST, session.local_port))
            sent += 1
        await asyncio.sleep(0.005)  # keep the order on the wire
    await until(lambda: session.packets_received >= sent)
    digits = session.dtmf()
    assert [digits.get_nowait() for _ in range(digits.qsize())] == list("0123456789")


async def test_many_sessions_are_paced_together(media: EmbeddedMedia, peer: Peer) -> None:
    """Twenty callers: each gets its 25 frames 20 ms apart, all sent on the same ticks."""
    sessions = [await connected(media, peer) for _ in range(20)]
    await asyncio.gather(*(s.play(tone(0.5)) for s in sessions))
    await until(lambda: len(peer.packets) >= 500)
    by_ssrc: dict[int, list[float]] = {}
    for at, packet in peer.packets:
        by_ssrc.setdefault(packet.ssrc, []).append(at)
    assert len(by_ssrc) == 20 and all(len(t) == 25 for t in by_ssrc.values())
    intervals = sorted(b - a for t in by_ssrc.values() for a, b in zip(t, t[1:], strict=False))
    assert abs(intervals[len(intervals) // 2] - 0.02) < 0.002  # the median
    firsts = sorted(t[0] for t in by_ssrc.values())
    assert firsts[-1] - firsts[0] < 0.015  # started on one tick, not one timer each


async def test_a_cancelled_play_stops_sending(media: EmbeddedMedia, peer: Peer) -> None:
    session = await connected(media, peer)
    playing = asyncio.create_task(session.play(tone(5.0)))
    await until(lambda: len(peer.packets) >= 3)
    playing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await playing
    await asyncio.sleep(0.05)
    count = len(peer.packets)
    await asyncio.sleep(0.1)
    assert len(peer.packets) == count < 10
    await session.play(tone(0.04))  # the session still plays afterwards
    await until(lambda: len(peer.packets) == count + 2)


async def test_an_rtp_host_named_in_sdp_is_resolved(media: EmbeddedMedia, peer: Peer) -> None:
    session = await media.open_session()
    session.answer(make_offer(address="localhost", port=peer.port, session_id=4).encode())
    await session.play(tone(0.06))
    await until(lambda: len(peer.packets) >= 3)

    unknown = await media.open_session()
    unknown.answer(make_offer(address="no-such-host.invalid", port=4000, session_id=4).encode())
    with pytest.raises(MediaError, match="cannot resolve"):
        await unknown.play(tone(0.06))


async def test_a_reoffer_to_a_host_name_mid_prompt(media: EmbeddedMedia, peer: Peer) -> None:
    session = await media.open_session()
    session.answer(make_offer(address=HOST, port=40000, session_id=6).encode())
    playing = asyncio.create_task(session.play(tone(1.0)))
    await asyncio.sleep(0.1)
    moved = make_offer(address="localhost", port=peer.port, session_id=6, session_version=2)
    session.answer(moved.encode())
    await playing
    # The rest of the prompt went to the new address once resolved, in one unbroken stream.
    assert 30 <= len(peer.packets) < 50
    packets = [p for _, p in peer.packets]
    assert [(p.sequence - packets[0].sequence) % 65536 for p in packets] == list(
        range(len(packets))
    )


async def test_one_prompt_to_two_callers(media: EmbeddedMedia, peer: Peer) -> None:
    """The encoded frames of a prompt are shared; each caller still gets all of them."""
    first, second = await connected(media, peer), await connected(media, peer)
    prompt = tone(0.2)
    await asyncio.gather(first.play(prompt), second.play(bytes(bytearray(prompt))))
    await until(lambda: len(peer.packets) >= 20)
    by_ssrc: dict[int, list[RtpPacket]] = {}
    for _, packet in peer.packets:
        by_ssrc.setdefault(packet.ssrc, []).append(packet)
    assert sorted(len(p) for p in by_ssrc.values()) == [10, 10]
    for packets in by_ssrc.values():
        assert correlation(b"".join(g711.ulaw_decode(p.payload) for p in packets), prompt) > 0.99
