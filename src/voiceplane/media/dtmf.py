"""RFC 4733 DTMF reception: telephone-event packets in, each key press out once. Sans-IO.

A sender repeats the packets of one event (start, updates, and usually three copies of the
end packet, section 2.5.1.4) and every packet of that event carries the RTP timestamp of
its start (section 2.3.1). So the event is (SSRC, timestamp, event code): it is reported
at its first end packet and not again while its packets keep coming. A press whose end
packets are all lost is not reported; the phone's redundant end packets are the protocol's
answer to loss, and guessing from the next event would double a long press split into
segments (section 2.5.1.3).

An event heard again after ``REPEAT_WINDOW`` of silence is a new press: a real phone
gives every press a new timestamp, but a replayed capture (SIPp's ``play_pcap_audio``
sends the same file byte for byte each time) repeats the headers too. No network delays a
duplicate that long while the call still works.
"""

from __future__ import annotations

from dataclasses import dataclass

from .rtp import RtpPacket, TelephoneEvent

__all__ = ["REPEAT_WINDOW", "DtmfDetector", "KeyPress"]

# Seconds after an event's last packet within which its packets are repeats of it.
REPEAT_WINDOW = 0.25
# Finished events remembered: enough for end packets reordered behind the next event.
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
        # Finished events -> when their last packet came; oldest first.
        self._done: dict[tuple[int, int, int], float] = {}

    def feed(self, packet: RtpPacket, event: TelephoneEvent, now: float) -> KeyPress | None:
        """The key press this packet ends, or ``None`` (not an end, a repeat, not DTMF).

        ``now`` is when the packet came, in seconds on any steady clock.
        """
        key = (packet.ssrc, packet.timestamp, event.event)
        last = self._done.pop(key, None)
        if last is not None:
            if now - last <= REPEAT_WINDOW:
                self._done[key] = now  # a repeat: the event is still going on
                return None
            # Silence, then the same event again: a replay of it, so a new press.
        if not event.end:
            return None
        self._done[key] = now
        if len(self._done) > _RECENT:
            del self._done[next(iter(self._done))]
        digit = event.digit
        if digit is None:
            return None
        return KeyPress(digit, packet.timestamp, event.duration)
