"""The media interface the call engine codes against (see DESIGN.md, Layers).

A ``MediaBackend`` hands out one ``MediaSession`` per call leg. The session does the SDP
offer/answer for its stream, plays prompts into it and reports what the far end sent
(RFC 4733 digits, a packet count that tells a live stream from a dead one). The engine
gets the SDP bytes from here and carries them in SIP; media never sees SIP itself.

Implementations: ``embedded.EmbeddedMedia`` (RTP in this process) and, later, rtpengine.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from .errors import MediaError

__all__ = ["MediaBackend", "MediaError", "MediaSession"]


class MediaSession(Protocol):
    """The media of one call leg.

    Outgoing call: ``offer()`` into the INVITE, ``accept_answer()`` with the 2xx body.
    Incoming call: ``answer()`` with the INVITE's offer, the result into the 2xx.
    Then ``play()`` prompts and read ``dtmf()``; ``close()`` when the leg ends.
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
