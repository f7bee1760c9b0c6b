"""Audio files to the PCM the media layer plays: 8 kHz, mono, 16-bit signed little-endian.

A WAV already in that format is read with the standard ``wave`` module. Anything else
(other rates, stereo, 8/24/32-bit, float, G.711 WAVs, WAVE_FORMAT_EXTENSIBLE headers) is
converted by ``sox`` in a subprocess, which also resamples and mixes down properly.
"""

from __future__ import annotations

import asyncio
import contextlib
import wave
from pathlib import Path

from .errors import MediaError

SAMPLE_RATE = 8000
SAMPLE_WIDTH = 2  # bytes
CHANNELS = 1

SOX = "sox"
SOX_TIMEOUT = 60.0  # seconds; sox converts minutes of audio in well under one
_STDERR_LIMIT = 500  # characters of a tool's complaint kept in the error message


async def load_wav(path: Path | str, *, timeout: float = SOX_TIMEOUT) -> bytes:
    """The audio of the WAV file at ``path`` as 8 kHz mono s16le PCM.

    ``MediaError`` when the file is missing, unreadable or not audio sox understands.
    """
    path = Path(path)
    pcm = await asyncio.to_thread(_read_native_wav, path)
    if pcm is not None:
        return pcm
    return await convert(path, timeout=timeout)


async def convert(path: Path, *, timeout: float = SOX_TIMEOUT) -> bytes:
    """Any audio file sox reads, as 8 kHz mono s16le PCM."""
    # An absolute path, so a name like "-" or "-n" is never taken for a sox option or device.
    source = str(path.absolute())
    args = [SOX, "-V1", source]
    args += ["-t", "raw", "-r", str(SAMPLE_RATE), "-c", str(CHANNELS)]
    args += ["-b", "16", "-e", "signed-integer", "-L", "-"]
    out, err, code = await run_tool(args, timeout=timeout)
    if code != 0:
        raise MediaError(f"sox cannot convert {path}: {_complaint(err)}")
    # sox writes whole samples; an odd byte would mean a truncated pipe, so drop it.
    return out[: len(out) - len(out) % SAMPLE_WIDTH]


async def run_tool(
    args: list[str], *, stdin: bytes | None = None, timeout: float
) -> tuple[bytes, bytes, int]:
    """Run a command: (stdout, stderr, exit code). ``MediaError`` if missing or too slow."""
    try:
        process = await asyncio.create_subprocess_exec(
            *args,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    except FileNotFoundError as exc:
        raise MediaError(f"{args[0]} is not installed (not found on PATH)") from exc
    except OSError as exc:
        raise MediaError(f"cannot run {args[0]}: {exc}") from exc
    try:
        out, err = await asyncio.wait_for(process.communicate(stdin), timeout)
    except TimeoutError as exc:
        raise MediaError(f"{args[0]} took longer than {timeout:g} s") from exc
    finally:
        # Timed out or cancelled: never leave the child running.
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
    assert process.returncode is not None
    return out, err, process.returncode


def _read_native_wav(path: Path) -> bytes | None:
    """The PCM of a WAV already 8 kHz mono s16; ``None`` when sox must convert it."""
    if not path.exists():
        raise MediaError(f"audio file not found: {path}")
    if not path.is_file():
        raise MediaError(f"not an audio file: {path}")
    try:
        with wave.open(str(path), "rb") as wav:
            native = (
                wav.getframerate() == SAMPLE_RATE
                and wav.getnchannels() == CHANNELS
                and wav.getsampwidth() == SAMPLE_WIDTH
                and wav.getcomptype() == "NONE"
            )
            if not native:
                return None
            pcm = wav.readframes(wav.getnframes())
            return pcm[: len(pcm) - len(pcm) % SAMPLE_WIDTH]  # a truncated file
    except (wave.Error, EOFError):
        return None  # not a plain PCM WAV: sox may still read it, or say why not
    except OSError as exc:
        raise MediaError(f"cannot read audio file {path}: {exc.strerror or exc}") from exc


def _complaint(stderr: bytes) -> str:
    text = stderr.decode("utf-8", "replace").strip()
    return text[:_STDERR_LIMIT] or "no message"
