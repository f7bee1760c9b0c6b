"""Fixtures of the media tests: the external tools (espeak-ng, sox) and test audio."""

from __future__ import annotations

import math
import os
import shutil
import struct
import wave
from pathlib import Path

import pytest


def _need(binary: str) -> None:
    """Skip without ``binary`` locally; in CI (env CI set) its absence is a failure."""
    if shutil.which(binary) is not None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{binary} is required in CI (scripts/setup.sh installs it)")
    pytest.skip(f"{binary} is not installed")


@pytest.fixture
def sox() -> None:
    _need("sox")


@pytest.fixture
def espeak_ng() -> None:
    _need("espeak-ng")
    _need("sox")  # speech is resampled by sox


def tone(
    seconds: float, *, frequency: float = 440.0, rate: int = 8000, amplitude: int = 8000
) -> bytes:
    """A sine as s16le PCM."""
    count = round(seconds * rate)
    return struct.pack(
        f"<{count}h",
        *(round(amplitude * math.sin(2 * math.pi * frequency * i / rate)) for i in range(count)),
    )


def samples(pcm: bytes) -> tuple[int, ...]:
    return struct.unpack(f"<{len(pcm) // 2}h", pcm)


def correlation(a: bytes, b: bytes) -> float:
    """Normalised correlation of two s16le signals over their common length."""
    x, y = samples(a), samples(b)
    n = min(len(x), len(y))
    dot = sum(x[i] * y[i] for i in range(n))
    norm = math.sqrt(sum(v * v for v in x[:n]) * sum(v * v for v in y[:n]))
    return dot / norm if norm else 0.0


def write_wav(
    path: Path, pcm: bytes, *, rate: int = 8000, channels: int = 1, width: int = 2
) -> Path:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(width)
        wav.setframerate(rate)
        wav.writeframes(pcm)
    return path
