"""Prompts: text spoken by espeak-ng, or audio files, as 8 kHz mono s16le PCM.

Speech is cached on disk, one ``<sha256>.pcm`` file per (voice, text): a campaign that says
the same thing to ten thousand callees synthesises it once. Two calls asking for the same
new prompt at once (in this process or another) serialise on a per-prompt lock file; the
second finds the first one's result. Cache files appear by atomic rename, so a reader never
sees half a file.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import logging
import os
import re
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import unquote, urlsplit

from .audio import load_wav, run_tool
from .errors import MediaError

log = logging.getLogger(__name__)

ESPEAK = "espeak-ng"
DEFAULT_VOICE = "en"
MAX_TEXT = 5000  # characters; minutes of speech, far more than any prompt
ESPEAK_TIMEOUT = 60.0  # seconds
LOCK_TIMEOUT = 150.0  # seconds; longer than one synthesis (espeak-ng, then sox) can take
_LOCK_POLL = 0.02  # seconds between tries of a held lock

# Bump when the cached bytes change meaning (format, tool options), to orphan old entries.
_CACHE_FORMAT = "s16le-8000-mono-v1"
# espeak-ng voice names: "en", "en-us", "en+f3" (variant), "mb/mb-en1". Never an option.
_VOICE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_+/-]{0,63}")


async def speak(text: str, cache_dir: Path, *, voice: str = DEFAULT_VOICE) -> bytes:
    """``text`` spoken by espeak-ng as 8 kHz mono s16le PCM, cached in ``cache_dir``."""
    text = _check_text(text)
    if _VOICE.fullmatch(voice) is None:
        raise MediaError(f"not an espeak-ng voice name: {voice!r}")
    key = hashlib.sha256(f"{_CACHE_FORMAT}\0{voice}\0{text}".encode()).hexdigest()
    cached = cache_dir / f"{key}.pcm"
    pcm = await asyncio.to_thread(_read_cached, cached)
    if pcm is not None:
        return pcm
    async with _exclusive(cache_dir, cache_dir / f"{key}.lock"):
        # Whoever held the lock before us may have made it.
        pcm = await asyncio.to_thread(_read_cached, cached)
        if pcm is None:
            pcm = await _synthesise(text, voice, cache_dir)
            await asyncio.to_thread(_store, cached, pcm)
    return pcm


async def load_target(target: str, cache_dir: Path, *, voice: str = DEFAULT_VOICE) -> bytes:
    """A call's prompt: an existing ``*.wav`` path or a ``file:`` target is played as audio,
    anything else is text to speak."""
    path = _file_target(target)
    if path is not None:
        return await load_wav(path)
    return await speak(target, cache_dir, voice=voice)


def _file_target(target: str) -> Path | None:
    if target.startswith("file://"):
        url = urlsplit(target)
        if url.netloc not in ("", "localhost"):
            raise MediaError(f"file URL on another host: {target!r}")
        return _file_path(unquote(url.path), target)
    if target.startswith("file:"):
        return _file_path(target[len("file:") :], target)
    if not target.lower().endswith(".wav") or "\0" in target:
        return None
    try:
        return Path(target) if Path(target).is_file() else None
    except OSError:  # e.g. a name too long: text that merely ends in ".wav"
        return None


def _file_path(path: str, target: str) -> Path:
    if not path or "\0" in path:
        raise MediaError(f"no file path in {target!r}")
    return Path(path)


def _check_text(text: str) -> str:
    text = text.strip()
    if not text:
        raise MediaError("nothing to say: the text is empty")
    if len(text) > MAX_TEXT:
        raise MediaError(f"text too long to speak: {len(text)} characters, at most {MAX_TEXT}")
    if "\0" in text:
        raise MediaError("text to speak contains a NUL character")
    return text


async def _synthesise(text: str, voice: str, cache_dir: Path) -> bytes:
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix="tts-") as work:
        wav = Path(work) / "speech.wav"
        # Text on stdin (-b 1: UTF-8), so it can never be read as an option or hit ARG_MAX.
        args = [ESPEAK, "-b", "1", "-v", voice, "-w", str(wav)]
        _, err, code = await run_tool(args, stdin=text.encode(), timeout=ESPEAK_TIMEOUT)
        if code != 0 or not wav.is_file():
            message = err.decode("utf-8", "replace").strip() or f"exit code {code}"
            raise MediaError(f"espeak-ng failed (voice {voice!r}): {message[:500]}")
        return await load_wav(wav)  # espeak-ng writes 22.05 kHz: sox brings it to 8 kHz


def _read_cached(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise MediaError(f"cannot read the speech cache {path}: {exc}") from exc


def _store(path: Path, pcm: bytes) -> None:
    """Write the cache entry under a temporary name, then rename it into place (atomic).

    A cache that cannot be written (disk full) costs time, not the call: warn and go on.
    """
    try:
        fd, temp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".pcm")
    except OSError as exc:
        log.warning("speech not cached in %s: %s", path.parent, exc)
        return
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(pcm)
        os.replace(temp, path)
    except OSError as exc:
        log.warning("speech not cached as %s: %s", path, exc)
        with contextlib.suppress(OSError):
            os.unlink(temp)


@contextlib.asynccontextmanager
async def _exclusive(cache_dir: Path, lock: Path) -> AsyncIterator[None]:
    """Hold an exclusive flock on ``lock``, polling so the event loop never blocks."""
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise MediaError(f"cannot use the speech cache {cache_dir}: {exc}") from exc
    try:
        deadline = asyncio.get_running_loop().time() + LOCK_TIMEOUT
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if asyncio.get_running_loop().time() > deadline:
                    raise MediaError(f"speech cache lock {lock} held too long") from None
                await asyncio.sleep(_LOCK_POLL)
        yield
    finally:
        os.close(fd)  # closing the only descriptor releases the lock
