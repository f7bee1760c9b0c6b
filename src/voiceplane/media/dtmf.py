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

from .rtp import RtpPacket, TelephoneEvent

# Remembered finished events: enough for end packets reordered behind the next event.
_RECENT = 16


class DtmfDetector:
    """Feed it the telephone-event packets of a stream; it returns each digit once."""

    def __init__(self) -> None:
        self._done: deque[tuple[int, int]] = deque(maxlen=_RECENT)

    def feed(self, packet: RtpPacket, event: TelephoneEvent) -> str | None:
        """The digit this packet completes, or ``None`` (not an end, a repeat, not DTMF)."""
        if not event.end:
            return None
        key = (packet.ssrc, packet.timestamp)
        if key in self._done:
            return None
        self._done.append(key)
        return event.digit
