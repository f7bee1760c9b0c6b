from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest

from voiceplane.media import tts
from voiceplane.media.errors import MediaError

from .conftest import correlation, tone, write_wav


@pytest.fixture
def espeak_calls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, espeak_ng: None) -> Path:
    """Run the real espeak-ng through a wrapper that logs each run to the returned file."""
    log = tmp_path / "espeak-calls.log"
    wrapper = tmp_path / "espeak-wrapper"
    real = shutil.which("espeak-ng")
    wrapper.write_text(f'#!/bin/sh\necho run >> "{log}"\nexec "{real}" "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setattr(tts, "ESPEAK", str(wrapper))
    return log


def runs(log: Path) -> int:
    return len(log.read_text().splitlines()) if log.exists() else 0


async def test_speech_is_8khz_pcm_of_plausible_length(tmp_path: Path, espeak_calls: Path) -> None:
    pcm = await tts.speak("Hello, this is voiceplane.", tmp_path / "cache")
    seconds = len(pcm) / 16000
    assert 0.8 < seconds < 4.0
    assert max(abs(s) for s in memoryview(pcm).cast("h")) > 1000  # not silence


async def test_the_same_prompt_is_synthesised_once(tmp_path: Path, espeak_calls: Path) -> None:
    cache = tmp_path / "cache"
    first = await tts.speak("Your code is 1 2 3 4", cache)
    again = await tts.speak("  Your code is 1 2 3 4\n", cache)  # outer blanks say nothing
    assert first == again
    assert runs(espeak_calls) == 1
    other = await tts.speak("Your code is 5 6 7 8", cache)
    assert other != first
    assert runs(espeak_calls) == 2


async def test_the_voice_is_part_of_the_key(tmp_path: Path, espeak_calls: Path) -> None:
    cache = tmp_path / "cache"
    await tts.speak("Good morning", cache, voice="en")
    await tts.speak("Good morning", cache, voice="en-us")
    assert runs(espeak_calls) == 2


async def test_concurrent_requests_synthesise_once(tmp_path: Path, espeak_calls: Path) -> None:
    results = await asyncio.gather(
        *(tts.speak("Please hold the line", tmp_path / "cache") for _ in range(5))
    )
    assert len(set(results)) == 1 and results[0]
    assert runs(espeak_calls) == 1
    leftovers = [p.name for p in (tmp_path / "cache").iterdir() if not p.name.endswith(".lock")]
    assert len(leftovers) == 1 and leftovers[0].endswith(".pcm")  # no temp files left


async def test_the_cache_is_used_from_disk(tmp_path: Path, espeak_calls: Path) -> None:
    cache = tmp_path / "cache"
    pcm = await tts.speak("Goodbye", cache)
    (entry,) = cache.glob("*.pcm")
    entry.write_bytes(b"\x01\x00" * 10)  # whatever is cached is what is played
    assert await tts.speak("Goodbye", cache) == b"\x01\x00" * 10 != pcm
    assert runs(espeak_calls) == 1


@pytest.mark.parametrize("text", ["", "   \n"])
async def test_empty_text_is_refused(tmp_path: Path, text: str) -> None:
    with pytest.raises(MediaError, match="empty"):
        await tts.speak(text, tmp_path)


async def test_overlong_text_is_refused(tmp_path: Path) -> None:
    with pytest.raises(MediaError, match="too long"):
        await tts.speak("a" * (tts.MAX_TEXT + 1), tmp_path)


@pytest.mark.parametrize("voice", ["-w", "", "en us", "../x", "en;rm"])
async def test_bad_voice_names_are_refused(tmp_path: Path, voice: str) -> None:
    with pytest.raises(MediaError, match="voice name"):
        await tts.speak("hello", tmp_path, voice=voice)


async def test_an_unknown_voice_is_espeaks_error(tmp_path: Path, espeak_calls: Path) -> None:
    with pytest.raises(MediaError, match="espeak-ng failed .*nosuchvoice"):
        await tts.speak("hello", tmp_path / "cache", voice="nosuchvoice")
    assert not list((tmp_path / "cache").glob("*.pcm"))


async def test_missing_espeak_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tts, "ESPEAK", "voiceplane-no-such-espeak")
    with pytest.raises(MediaError, match="voiceplane-no-such-espeak is not installed"):
        await tts.speak("hello", tmp_path)


async def test_text_that_looks_like_an_option_is_spoken(
    tmp_path: Path, espeak_calls: Path
) -> None:
    pcm = await tts.speak("--help", tmp_path / "cache")
    assert len(pcm) > 1600


# --------------------------------------------------------------------------- load_target


@pytest.fixture
def prompt(tmp_path: Path) -> tuple[Path, bytes]:
    pcm = tone(0.3)
    return write_wav(tmp_path / "prompt.wav", pcm), pcm


async def test_an_existing_wav_path_is_played(tmp_path: Path, prompt: tuple[Path, bytes]) -> None:
    path, pcm = prompt
    assert await tts.load_target(str(path), tmp_path / "cache") == pcm


@pytest.mark.parametrize("form", ["file:{path}", "file://{path}", "file://localhost{path}"])
async def test_file_targets(tmp_path: Path, prompt: tuple[Path, bytes], form: str) -> None:
    path, pcm = prompt
    assert await tts.load_target(form.format(path=path), tmp_path / "cache") == pcm


async def test_a_relative_file_target(
    tmp_path: Path, prompt: tuple[Path, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert await tts.load_target("file:prompt.wav", tmp_path / "cache") == prompt[1]


async def test_a_file_url_is_percent_decoded(tmp_path: Path) -> None:
    pcm = tone(0.2)
    path = write_wav(tmp_path / "my prompt.wav", pcm)
    url = "file://" + str(path).replace(" ", "%20")
    assert await tts.load_target(url, tmp_path / "cache") == pcm


async def test_a_missing_file_target_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(MediaError, match="not found"):
        await tts.load_target(f"file:{tmp_path}/missing.wav", tmp_path / "cache")


@pytest.mark.parametrize("target", ["file:", "file://remote.example.com/x.wav"])
async def test_bad_file_targets(tmp_path: Path, target: str) -> None:
    with pytest.raises(MediaError):
        await tts.load_target(target, tmp_path / "cache")


async def test_anything_else_is_spoken(tmp_path: Path, espeak_calls: Path) -> None:
    cache = tmp_path / "cache"
    spoken = await tts.load_target("Thank you for calling", cache)
    assert spoken == await tts.speak("Thank you for calling", cache)
    # A .wav name that does not exist is text too (the spec: only existing paths are files).
    missing = await tts.load_target(str(tmp_path / "absent.wav"), cache)
    assert runs(espeak_calls) == 2
    assert correlation(missing, spoken) < 0.9


async def test_a_wav_prompt_does_not_run_espeak(
    tmp_path: Path, prompt: tuple[Path, bytes], espeak_calls: Path
) -> None:
    await tts.load_target(str(prompt[0]), tmp_path / "cache")
    assert runs(espeak_calls) == 0
    assert not os.path.exists(tmp_path / "cache")
