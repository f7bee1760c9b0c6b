"""Recording what the far end says, through the embedded backend over real loopback UDP."""

from __future__ import annotations

import asyncio
import random
import wave
from pathlib import Path

import pytest

from voiceplane.media import g711
from voiceplane.media.backend import MediaError, RecordingEnd
from voiceplane.media.dtmf import KeyPress
from voiceplane.media.embedded import EmbeddedMedia, EmbeddedSession
from voiceplane.media.rtp import RtpPacket
from voiceplane.sip.sdp import PCMA, TELEPHONE_EVENT

from .conftest import correlation, samples, tone
from .test_embedded import HOST, Peer, connected, key_press, media, peer, until

__all__ = ["media", "peer"]  # the fixtures, imported to be used here

FRAME = 160


def audio_packets(
    pcm: bytes, *, encode: object = g711.ulaw_encode, payload_type: int = 0, ssrc: int = 0xBEEF
) -> list[bytes]:
    """``pcm`` as RTP packets of 20 ms, sequence numbers from 65530 (so they wrap)."""
    assert callable(encode)
    out = []
    for n, offset in enumerate(range(0, len(pcm), 2 * FRAME)):
        payload = encode(pcm[offset : offset + 2 * FRAME])
        packet = RtpPacket(payload_type, (65530 + n) % 65536, 1000 + n * FRAME, ssrc, payload)
        out.append(packet.encode())
    return out


def shuffled_within(packets: list[bytes], window: int, seed: int) -> list[bytes]:
    """Reordered so that no packet is more than ``window`` places late."""
    rng = random.Random(seed)
    keys = [n + rng.randint(0, window) for n in range(len(packets))]
    return [p for _, _, p in sorted(zip(keys, range(len(packets)), packets, strict=True))]


def read_wav(path: Path) -> bytes:
    with wave.open(str(path), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 8000)
        return wav.readframes(wav.getnframes())


async def send_all(peer: Peer, session: EmbeddedSession, datagrams: list[bytes]) -> None:
    assert peer.transport is not None
    start = session.packets_received
    for data in datagrams:
        peer.transport.sendto(data, (HOST, session.local_port))
    await until(lambda: session.packets_received >= start + len(datagrams))


async def test_a_tone_reordered_and_doubled_is_recorded_as_sent(
    media: EmbeddedMedia, peer: Peer, tmp_path: Path
) -> None:
    session = await connected(media, peer)
    sent = tone(1.0, frequency=700)
    packets = audio_packets(sent)
    arrivals = shuffled_within(packets, 2, seed=1)
    arrivals[10:10] = arrivals[3:6]  # duplicates
    recording = asyncio.create_task(session.record(tmp_path / "a.wav", 10, "#"))
    await asyncio.sleep(0)
    await send_all(peer, session, arrivals)
    await send_all(peer, session, key_press("#", 50000, 100))
    result = await asyncio.wait_for(recording, 2)

    assert (result.ended_by, result.digit) == (RecordingEnd.DIGIT, "#")
    assert result.path == tmp_path / "a.wav"
    got = read_wav(result.path)
    assert len(got) == len(sent)
    assert result.duration == 1.0
    assert correlation(got, sent) > 0.99
    assert session.dtmf().empty()  # the stop key was the recording's, not a digit to gather
    assert [k.digit for k in session.key_presses] == ["#"]
    assert session.key_presses[0] == KeyPress("#", 50000, 640)


async def test_a_lost_packet_is_silence_in_the_file(
    media: EmbeddedMedia, peer: Peer, tmp_path: Path
) -> None:
    session = await connected(media, peer, supported=(PCMA, TELEPHONE_EVENT))
    sent = tone(0.2, frequency=500)
    packets = audio_packets(sent, encode=g711.alaw_encode, payload_type=8)
    del packets[4]
    recording = asyncio.create_task(session.record(tmp_path / "b.wav", 10))
    await asyncio.sleep(0)
    await send_all(peer, session, packets)
    await session.close()
    result = await asyncio.wait_for(recording, 2)
    assert result.ended_by is RecordingEnd.CLOSED
    got = read_wav(result.path)
    assert len(got) == len(sent)
    assert samples(got[4 * 2 * FRAME : 5 * 2 * FRAME]) == (0,) * FRAME
    expected = sent[: 4 * 2 * FRAME] + bytes(2 * FRAME) + sent[5 * 2 * FRAME :]
    assert correlation(got, expected) > 0.99


async def test_max_length_ends_it_and_other_keys_are_digits(
    media: EmbeddedMedia, peer: Peer, tmp_path: Path
) -> None:
    session = await connected(media, peer)
    loop = asyncio.get_running_loop()
    began = loop.time()
    recording = asyncio.create_task(session.record(tmp_path / "c.wav", 0.3, "#"))
    await asyncio.sleep(0)
    await send_all(peer, session, key_press("5", 1000, 0))
    # Events and comfort noise (13) and unknown payload types are not audio to record.
    await send_all(peer, session, [RtpPacket(13, 9, 1, 2, b"\x40").encode()])
    await send_all(peer, session, [RtpPacket(99, 10, 1, 2, b"\x00" * 160).encode()])
    result = await asyncio.wait_for(recording, 2)
    assert 0.29 < loop.time() - began < 1.0
    assert (result.ended_by, result.digit, result.duration) == (RecordingEnd.MAX_LENGTH, None, 0.0)
    assert read_wav(result.path) == b""
    assert session.dtmf().get_nowait() == "5"


async def test_audio_beyond_max_length_is_cut(
    media: EmbeddedMedia, peer: Peer, tmp_path: Path
) -> None:
    session = await connected(media, peer)
    recording = asyncio.create_task(session.record(tmp_path / "d.wav", 0.5))
    await asyncio.sleep(0)
    await send_all(peer, session, audio_packets(tone(1.0)))  # faster than real time
    result = await asyncio.wait_for(recording, 2)
    assert (result.ended_by, result.duration) == (RecordingEnd.MAX_LENGTH, 0.5)
    assert len(read_wav(result.path)) == 8000


async def test_bad_requests(media: EmbeddedMedia, peer: Peer, tmp_path: Path) -> None:
    fresh = await media.open_session()
    with pytest.raises(MediaError, match="before the SDP offer/answer"):
        await fresh.record(tmp_path / "x.wav", 1)
    session = await connected(media, peer)
    with pytest.raises(MediaError, match="max_s"):
        await session.record(tmp_path / "x.wav", 0)
    with pytest.raises(MediaError, match="DTMF keys"):
        await session.record(tmp_path / "x.wav", 1, "#x")
    with pytest.raises(MediaError, match="cannot write"):
        await session.record(tmp_path / "missing" / "x.wav", 1)
    first = asyncio.create_task(session.record(tmp_path / "y.wav", 5))
    await asyncio.sleep(0)
    with pytest.raises(MediaError, match="already recording"):
        await session.record(tmp_path / "z.wav", 1)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert read_wav(tmp_path / "y.wav") == b""  # cancelled: still a valid, empty file


async def test_recording_a_closed_session_gives_an_empty_file(
    media: EmbeddedMedia, peer: Peer, tmp_path: Path
) -> None:
    session = await connected(media, peer)
    await session.close()
    result = await session.record(tmp_path / "e.wav", 3)
    assert (result.ended_by, result.duration) == (RecordingEnd.CLOSED, 0.0)
    assert read_wav(result.path) == b""


async def test_play_file(media: EmbeddedMedia, peer: Peer, tmp_path: Path) -> None:
    from .conftest import write_wav

    path = write_wav(tmp_path / "p.wav", tone(0.1))
    session = await connected(media, peer)
    await session.play_file(path)
    await until(lambda: len(peer.packets) >= 5)
    with pytest.raises(MediaError):
        await session.play_file(tmp_path / "nothing.wav")


async def test_silence_ends_a_recording(media: EmbeddedMedia, peer: Peer, tmp_path: Path) -> None:
    session = await connected(media, peer)
    loop = asyncio.get_running_loop()
    began = loop.time()
    result = await session.record(tmp_path / "s.wav", 10, silence_s=0.2)  # nobody speaks
    assert result.ended_by is RecordingEnd.SILENCE
    assert 0.19 < loop.time() - began < 0.6


async def test_voice_holds_off_the_silence_end(
    media: EmbeddedMedia, peer: Peer, tmp_path: Path
) -> None:
    session = await connected(media, peer)
    loop = asyncio.get_running_loop()
    began = loop.time()
    recording = asyncio.create_task(session.record(tmp_path / "v.wav", 10, silence_s=0.3))
    await asyncio.sleep(0)
    speech = audio_packets(tone(0.6))
    quiet = audio_packets(bytes(2 * 8000), ssrc=0xBEEF)[30:40]  # silence, numbered after it
    assert peer.transport is not None
    for data in speech + quiet:  # in real time: the silence timer must see the voice
        peer.transport.sendto(data, (HOST, session.local_port))
        await asyncio.sleep(0.02)
    result = await asyncio.wait_for(recording, 2)
    took = loop.time() - began
    assert result.ended_by is RecordingEnd.SILENCE
    assert 0.6 + 0.3 - 0.05 < took < 0.6 + 0.2 + 0.3 + 0.3  # voice, quiet packets, window
    assert 0.6 <= result.duration <= 1.0
    assert correlation(read_wav(result.path)[: len(tone(0.6))], tone(0.6)) > 0.99


async def test_a_bad_silence_is_refused(media: EmbeddedMedia, peer: Peer, tmp_path: Path) -> None:
    session = await connected(media, peer)
    with pytest.raises(MediaError, match="silence_s"):
        await session.record(tmp_path / "b.wav", 5, silence_s=0)
