"""A jitter buffer for received audio: packets in any order, PCM out in order. Sans-IO.

The network may reorder, duplicate or lose RTP packets. The buffer holds up to ``depth``
packets (3 at 20 ms: a 60 ms window) and releases the lowest sequence number each time it
holds more, so a packet arriving up to ``depth`` places late still comes out in order.
A packet below what was already released is late and dropped, as is a duplicate.

Gaps are filled with silence, sized by the RTP timestamps (RFC 3550 section 5.1): that
covers lost packets and silence suppression alike (RFC 3551 section 4.1: the timestamp
jumps, the sequence number does not). A jump beyond ``max_gap`` samples is not believed;
lost packets then count as the size of the last frame each, capped at ``max_gap`` too.
"""

from __future__ import annotations

from dataclasses import dataclass

from .audio import SAMPLE_WIDTH

__all__ = ["JitterBuffer", "JitterStats"]

_SEQ_MOD = 1 << 16
_TS_MOD = 1 << 32


@dataclass(frozen=True, slots=True)
class JitterStats:
    """What the buffer did with the packets it was given."""

    released: int
    duplicates: int
    late: int
    lost: int  # sequence numbers skipped over and filled with silence


class JitterBuffer:
    """Reorders one stream's decoded frames (8 kHz s16le PCM) by RTP sequence number."""

    def __init__(self, *, depth: int = 3, max_gap: int = 10 * 8000) -> None:
        if depth < 0:
            raise ValueError(f"jitter buffer depth must be >= 0, got {depth}")
        if max_gap < 0:
            raise ValueError(f"max_gap must be >= 0 samples, got {max_gap}")
        self._depth = depth
        self._max_gap = max_gap
        self._ssrc: int | None = None
        self._highest: int | None = None  # extended sequence number (wraps unrolled)
        self._next: int | None = None  # extended sequence number due next
        self._end_ts: int = 0  # RTP timestamp just past the last released frame
        self._last_samples = 0
        self._held: dict[int, tuple[int, bytes]] = {}
        self._released = self._duplicates = self._late = self._lost = 0

    @property
    def stats(self) -> JitterStats:
        return JitterStats(self._released, self._duplicates, self._late, self._lost)

    def push(self, ssrc: int, sequence: int, timestamp: int, pcm: bytes) -> bytes:
        """Take one packet's decoded audio; returns the PCM now ready, in order.

        A new SSRC (the far end restarted its stream) releases the old stream's frames
        first: their sequence numbers say nothing about the new ones.
        """
        if not 0 <= sequence < _SEQ_MOD or not 0 <= timestamp < _TS_MOD:
            raise ValueError(f"bad RTP sequence {sequence} or timestamp {timestamp}")
        if len(pcm) % SAMPLE_WIDTH:
            raise ValueError(f"PCM must be 16-bit samples: {len(pcm)} bytes is an odd length")
        out = b""
        if self._ssrc != ssrc:
            out = self.flush()
            self._ssrc, self._highest, self._next = ssrc, None, None
        ext = self._extend(sequence)
        if self._next is not None and ext < self._next:
            self._late += 1
            return out
        if ext in self._held:
            self._duplicates += 1
            return out
        self._held[ext] = (timestamp, pcm)
        if self._highest is None or ext > self._highest:
            self._highest = ext
        parts = [out] if out else []
        while len(self._held) > self._depth:
            parts.append(self._release(min(self._held)))
        return b"".join(parts)

    def flush(self) -> bytes:
        """Everything still held, in order (the stream ended or a recording stops)."""
        parts = [self._release(ext) for ext in sorted(self._held)]
        return b"".join(parts)

    def _extend(self, sequence: int) -> int:
        """The extended sequence number nearest the highest seen (RFC 3550 appendix A.1)."""
        if self._highest is None:
            return sequence
        delta = (sequence - self._highest) % _SEQ_MOD
        if delta >= _SEQ_MOD // 2:
            delta -= _SEQ_MOD
        return self._highest + delta

    def _release(self, ext: int) -> bytes:
        timestamp, pcm = self._held.pop(ext)
        silence = 0
        if self._next is not None:
            missing = ext - self._next
            self._lost += missing
            gap = (timestamp - self._end_ts) % _TS_MOD
            if gap >= _TS_MOD // 2:
                gap = 0  # the timestamp went back: overlap, nothing to fill
            elif gap > self._max_gap:
                gap = min(missing * self._last_samples, self._max_gap)
            silence = gap
        self._released += 1
        self._next = ext + 1
        samples = len(pcm) // SAMPLE_WIDTH
        self._end_ts = (timestamp + samples) % _TS_MOD
        self._last_samples = samples
        return bytes(silence * SAMPLE_WIDTH) + pcm if silence else pcm
