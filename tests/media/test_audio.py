from __future__ import annotations

import struct
from pathlib import Path

import pytest

from voiceplane.media import audio
from voiceplane.media.errors import MediaError

from .conftest import correlation, tone, write_wav


async def test_a_native_wav_is_read_as_is_without_sox(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(audio, "SOX", str(tmp_path / "no-sox-here"))
    pcm = tone(0.5)
    assert await audio.load_wav(write_wav(tmp_path / "a.wav", pcm)) == pcm


@pytest.mark.usefixtures("sox")
async def test_another_rate_is_resampled_by_sox(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "wide.wav", tone(1.0, rate=16000), rate=16000)
    pcm = await audio.load_wav(path)
    assert abs(len(pcm) - 16000) <= 20  # one second at 8 kHz, 16-bit
    assert correlation(pcm[200:-200], tone(1.0)[200:-200]) > 0.95


@pytest.mark.usefixtures("sox")
async def test_stereo_8_bit_is_mixed_down_and_widened(tmp_path: Path) -> None:
    mono = tone(0.5)
    # 8-bit WAV is unsigned; both channels carry the same tone.
    frames = bytes(
        byte for (s,) in struct.iter_unpack("<h", mono) for byte in (((s >> 8) + 128),) * 2
    )
    path = write_wav(tmp_path / "stereo.wav", frames, channels=2, width=1)
    pcm = await audio.load_wav(path)
    assert len(pcm) == len(mono)
    assert correlation(pcm, mono) > 0.95


async def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(MediaError, match="not found"):
        await audio.load_wav(tmp_path / "nope.wav")


async def test_a_directory_is_no_audio_file(tmp_path: Path) -> None:
    with pytest.raises(MediaError, match="not an audio file"):
        await audio.load_wav(tmp_path)


@pytest.mark.usefixtures("sox")
async def test_garbage_is_refused_with_sox_reason(tmp_path: Path) -> None:
    path = tmp_path / "junk.wav"
    path.write_bytes(b"this is not a RIFF file at all")
    with pytest.raises(MediaError, match="sox cannot convert .*junk.wav"):
        await audio.load_wav(path)


async def test_missing_sox_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(audio, "SOX", "voiceplane-no-such-sox")
    path = write_wav(tmp_path / "wide.wav", tone(0.1, rate=16000), rate=16000)
    with pytest.raises(MediaError, match="voiceplane-no-such-sox is not installed"):
        await audio.load_wav(path)


async def test_a_hanging_tool_is_killed(tmp_path: Path) -> None:
    with pytest.raises(MediaError, match="took longer than 0.2 s"):
        await audio.run_tool(["sleep", "10"], timeout=0.2)


async def test_a_truncated_native_wav_keeps_whole_samples(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "cut.wav", tone(0.1))
    path.write_bytes(path.read_bytes()[:-1])
    pcm = await audio.load_wav(path)
    assert len(pcm) % 2 == 0
    assert pcm == tone(0.1)[: len(pcm)]
