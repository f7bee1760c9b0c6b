"""The media interface the call engine codes against (see DESIGN.md, Layers).

A ``MediaBackend`` hands out one ``MediaSession`` per call leg. The session does the SDP
offer/answer for its stream, plays prompts into it and reports what the far end sent
(RFC 4733 digits, a packet count that tells a live stream from a dead one). The engine
gets the SDP bytes from here and carries them in SIP; media never sees SIP itself.

Implementations: ``embedded.EmbeddedMedia`` (RTP in this process) and, later, rtpengine.
"""

from __future__ import annotations

import asyncio
import enum
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from .errors import MediaError

__all__ = ["MediaBackend", "MediaError", "MediaSession", "Recording", "RecordingEnd"]


class RecordingEnd(enum.Enum):
    """Why ``MediaSession.record`` stopped."""

    MAX_LENGTH = "max_length"  # max_s went by
    DIGIT = "digit"  # the far end pressed one of the stop_on_digits keys
    SILENCE = "silence"  # no voice for silence_s (EmbeddedSession.record's keyword)
    CLOSED = "closed"  # the session was closed (the call ended)


@dataclass(frozen=True, slots=True)
class Recording:
    """A finished recording: a WAV file of 8 kHz mono s16le what the far end said."""

    path: Path
    duration: float  # seconds of audio in the file
    ended_by: RecordingEnd
    digit: str | None = None  # the key that ended it (ended_by DIGIT), not also in dtmf()


class MediaSession(Protocol):
    """The media of one call leg.

    Outgoing call: ``offer()`` into the INVITE, ``accept_answer()`` with the 2xx body.
    Incoming call: ``answer()`` with the INVITE's offer, the result into the 2xx.
    Then ``play()`` prompts, read ``dtmf()``, ``record()``; ``close()`` when the leg ends.
    """

    @property
    def local_port(self) -> int:
        """The UDP port RTP is received on (even, RFC 3550 section 11)."""
        ...

    def offer(self) -> bytes:
        """Our SDP offer: PCMU, PCMA and telephone-event/8000."""
        ...

    def accept_answer(self, sdp: bytes) -> None:
        """Take the answer to our offer; ``MediaError`` if it is unreadable or unusable."""
        ...

    def answer(self, offer: bytes) -> bytes:
        """Our SDP answer to a remote offer; ``MediaError`` if no codec is in common."""
        ...

    async def play(self, pcm: bytes) -> None:
        """Send 8 kHz mono s16le ``pcm`` in paced 20 ms frames; returns when all is sent.

        Returns early, without error, if the session is closed meanwhile.
        """
        ...

    async def play_file(self, path: Path | str) -> None:
        """``play()`` the audio of a WAV file (any format sox reads); ``MediaError`` if none."""
        ...

    async def record(
        self, path: Path | str, max_s: float, stop_on_digits: str = ""
    ) -> Recording:
        """Write what the far end says to a WAV file at ``path`` (8 kHz mono s16le).

        Ends after ``max_s`` seconds, at the first key press among ``stop_on_digits`` (that
        key is reported in the result, not in ``dtmf()``; other keys go to ``dtmf()`` as
        usual), or when the session closes; the file is complete in every case. A second
        ``record()`` while one runs is a ``MediaError``; so is ``max_s <= 0`` or a
        ``stop_on_digits`` that is not DTMF keys.
        """
        ...

    def dtmf(self) -> asyncio.Queue[str]:
        """Digits received via RFC 4733, each key press once (``0-9 * # A-D``)."""
        ...

    @property
    def packets_received(self) -> int:
        """RTP packets received so far (audio and events)."""
        ...

    async def close(self) -> None:
        """Stop sending and receiving and release the port. Safe to call twice."""
        ...


class MediaBackend(Protocol):
    """Makes media sessions; ``close()`` closes every session still open."""

    async def open_session(self) -> MediaSession:
        """A new session with its own RTP port; ``MediaError`` if none is free."""
        ...

    async def close(self) -> None: ...
