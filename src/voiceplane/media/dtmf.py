"""RFC 4733 DTMF reception: telephone-event packets in, each key press out once. Sans-IO.

A sender repeats the packets of one event (start, updates, and usually three copies of the
end packet, section 2.5.1.4) and every packet of that event carries the RTP timestamp of
its start (section 2.3.1). So the event is (SSRC, timestamp): it is reported at its first
end packet and never again. A press whose end packets are all lost is not reported; the
phone's redundant end packets are the protocol's answer to loss, and guessing from the
next event would double a long press split into segments (section 2.5.1.3).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from .rtp import RtpPacket, TelephoneEvent

__all__ = ["DtmfDetector", "KeyPress"]

# Remembered finished events: enough for end packets reordered behind the next event.
_RECENT = 16


@dataclass(frozen=True, slots=True)
class KeyPress:
    """One key press: the key, when it began and how long it was held.

    ``timestamp`` is the RTP timestamp of the event's start and ``duration`` is in the same
    units (1/8000 s for telephone-event/8000), both as the sender stated them.
    """

    digit: str
    timestamp: int
    duration: int

    @property
    def seconds(self) -> float:
        """How long the key was held, for the usual 8 kHz event clock."""
        return self.duration / 8000


class DtmfDetector:
    """Feed it the telephone-event packets of a stream; it returns each key press once."""

    def __init__(self) -> None:
        self._done: deque[tuple[int, int]] = deque(maxlen=_RECENT)

    def feed(self, packet: RtpPacket, event: TelephoneEvent) -> KeyPress | None:
        """The key press this packet ends, or ``None`` (not an end, a repeat, not DTMF)."""
        if not event.end:
            return None
        key = (packet.ssrc, packet.timestamp)
        if key in self._done:
            return None
        self._done.append(key)
        digit = event.digit
        if digit is None:
            return None
        return KeyPress(digit, packet.timestamp, event.duration)
