"""One recording in progress: decoded audio through a jitter buffer into a WAV file.

The session feeds it the audio packets it receives and the keys pressed; the recorder
decides when it is over (length reached, a stop key, ``silence_s`` without voice) and
resolves ``done``. Frames are
appended with ``writeframesraw`` (no header rewrite per packet); ``close()`` fixes the
header, so the file is a valid WAV however the recording ended.
"""

from __future__ import annotations

import asyncio
import math
import wave
from array import array
from pathlib import Path
from sys import byteorder

from .audio import CHANNELS, SAMPLE_RATE, SAMPLE_WIDTH
from .backend import Recording, RecordingEnd
from .errors import MediaError
from .jitter import JitterBuffer
from .rtp import DTMF_EVENTS

__all__ = ["VOICE_LEVEL", "Recorder", "check_request"]

# Mean absolute sample value from which a packet counts as voice (about -36 dBFS): well
# above G.711's idle noise, well below speech.
VOICE_LEVEL = 500


def check_request(max_s: float, stop_on_digits: str, silence_s: float | None = None) -> None:
    """``MediaError`` for a record() request that makes no sense."""
    if not isinstance(max_s, int | float) or not 0 < max_s < math.inf:
        raise MediaError(f"max_s must be a positive number of seconds, got {max_s!r}")
    if silence_s is not None and (
        not isinstance(silence_s, int | float) or not 0 < silence_s < math.inf
    ):
        raise MediaError(f"silence_s must be a positive number of seconds, got {silence_s!r}")
    bad = {d for d in stop_on_digits.upper() if d not in DTMF_EVENTS}
    if bad:
        raise MediaError(f"stop_on_digits must be DTMF keys (0-9 * # A-D), got {stop_on_digits!r}")


class Recorder:
    """Writes one stream's received audio to ``path``; resolves ``done`` when it should end.

    With ``silence_s``, it also ends once that long has passed, by the loop clock of
    ``done``, without a packet of voice (``VOICE_LEVEL``): from the start, too, so a caller
    who says nothing is not held for ``max_s``. The clock, not the samples, because a
    phone that suppresses silence sends nothing at all while the caller is quiet.
    """

    def __init__(
        self,
        path: Path | str,
        max_s: float,
        stop_on_digits: str,
        done: asyncio.Future[None],
        *,
        silence_s: float | None = None,
    ) -> None:
        check_request(max_s, stop_on_digits, silence_s)
        self.path = Path(path)
        self.done = done
        self._loop = done.get_loop()
        self._silence_s = silence_s
        self._last_voice = self._loop.time()
        self._silence_timer: asyncio.TimerHandle | None = None
        if silence_s is not None:
            self._silence_timer = self._loop.call_at(
                self._last_voice + silence_s, self._check_silence
            )
        self._stop_keys = frozenset(stop_on_digits.upper())
        self._limit = round(max_s * SAMPLE_RATE)  # samples
        self._written = 0
        self._ended_by = RecordingEnd.CLOSED
        self._digit: str | None = None
        self._error: OSError | None = None  # a write failed: the recording is lost
        self._buffer = JitterBuffer()
        try:
            # Opened here, not by wave.open(path): that one leaves a broken object behind
            # when the open fails, which complains again when collected.
            self._file = self.path.open("wb")  # noqa: SIM115 - closed in close()
        except OSError as exc:
            raise MediaError(f"cannot write the recording {self.path}: {exc}") from exc
        self._wav = wave.open(self._file, "wb")
        self._wav.setnchannels(CHANNELS)
        self._wav.setsampwidth(SAMPLE_WIDTH)
        self._wav.setframerate(SAMPLE_RATE)

    def audio(self, ssrc: int, sequence: int, timestamp: int, pcm: bytes) -> None:
        """One received packet's decoded audio."""
        if self.done.done():
            return
        if self._silence_s is not None and _level(pcm) >= VOICE_LEVEL:
            self._last_voice = self._loop.time()
        self._write(self._buffer.push(ssrc, sequence, timestamp, pcm))

    def key(self, digit: str) -> bool:
        """A key press; ``True`` if it ends the recording (then it is consumed)."""
        if self.done.done() or digit not in self._stop_keys:
            return False
        self.finish(RecordingEnd.DIGIT, digit)
        return True

    def finish(self, ended_by: RecordingEnd, digit: str | None = None) -> None:
        """End the recording (the first reason given is kept)."""
        if not self.done.done():
            self._ended_by, self._digit = ended_by, digit
            self.done.set_result(None)
        if self._silence_timer is not None:
            self._silence_timer.cancel()
            self._silence_timer = None

    def close(self) -> Recording:
        """Write what the jitter buffer still holds and close the file."""
        self.finish(RecordingEnd.CLOSED)
        self._write(self._buffer.flush())
        try:
            self._wav.close()  # writes the header's sizes; leaves our file open
            self._file.close()
        except OSError as exc:
            self._error = self._error or exc
            self._file.close()
        if self._error is not None:
            raise MediaError(f"cannot write the recording {self.path}: {self._error}")
        return Recording(self.path, self._written / SAMPLE_RATE, self._ended_by, self._digit)

    def _check_silence(self) -> None:
        assert self._silence_s is not None
        due = self._last_voice + self._silence_s
        if self._loop.time() >= due:
            self._silence_timer = None
            self.finish(RecordingEnd.SILENCE)
        else:  # voice came meanwhile
            self._silence_timer = self._loop.call_at(due, self._check_silence)

    def _write(self, pcm: bytes) -> None:
        if not pcm or self._error is not None:
            return
        room = self._limit - self._written
        pcm = pcm[: room * SAMPLE_WIDTH]
        try:
            self._wav.writeframesraw(pcm)
        except OSError as exc:  # disk full and the like: end now, close() reports it
            self._error = exc
            self.finish(RecordingEnd.CLOSED)
            return
        self._written += len(pcm) // SAMPLE_WIDTH
        if self._written >= self._limit:
            self.finish(RecordingEnd.MAX_LENGTH)


def _level(pcm: bytes) -> float:
    """Mean absolute sample value of s16le ``pcm`` (0 for nothing)."""
    samples = array("h")
    samples.frombytes(pcm)
    if byteorder == "big":
        samples.byteswap()
    return sum(map(abs, samples)) / len(samples) if samples else 0.0
