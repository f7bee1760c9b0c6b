"""RTP packets (RFC 3550 section 5.1) and RFC 4733 telephone-event payloads, sans-IO.

``RtpPacket.parse`` and ``TelephoneEvent.parse`` raise ``RtpError`` and nothing else, so a
receive path can drop any datagram the network throws at it with one ``except``. Building
checks every field range and raises ``ValueError``: that is a bug of ours, not bad input.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .errors import RtpError

RTP_VERSION = 2
HEADER_SIZE = 12
_HEADER = struct.Struct("!BBHII")
_EXTENSION_HEADER = struct.Struct("!HH")
_EVENT = struct.Struct("!BBH")
_MAX_CSRCS = 15

# RFC 5761 section 4: with RTCP multiplexed on the RTP port, RTCP packet types 192-223 sit
# where marker + payload type would be; a real RTP stream never uses payload types 64-95.
_RTCP_TYPES = range(192, 224)

# RFC 4733 section 3.2: DTMF events 0-15.
DTMF_EVENTS = "0123456789*#ABCD"


@dataclass(frozen=True, slots=True)
class RtpExtension:
    """The header extension (RFC 3550 section 5.3.1): a 16-bit profile value and 32-bit words."""

    profile: int
    data: bytes

    def __post_init__(self) -> None:
        _check_range("extension profile", self.profile, 0xFFFF)
        if len(self.data) % 4 or len(self.data) > 0xFFFF * 4:
            raise ValueError(f"extension data must be whole 32-bit words, got {len(self.data)}")


@dataclass(frozen=True, slots=True)
class RtpPacket:
    """One RTP packet. ``padding`` counts the padding octets, the count octet included."""

    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes = b""
    marker: bool = False
    csrcs: tuple[int, ...] = ()
    extension: RtpExtension | None = None
    padding: int = 0

    def __post_init__(self) -> None:
        _check_range("payload type", self.payload_type, 127)
        _check_range("sequence number", self.sequence, 0xFFFF)
        _check_range("timestamp", self.timestamp, 0xFFFFFFFF)
        _check_range("SSRC", self.ssrc, 0xFFFFFFFF)
        _check_range("padding", self.padding, 255)
        if len(self.csrcs) > _MAX_CSRCS:
            raise ValueError(f"at most {_MAX_CSRCS} CSRCs, got {len(self.csrcs)}")
        for csrc in self.csrcs:
            _check_range("CSRC", csrc, 0xFFFFFFFF)

    def encode(self) -> bytes:
        first = (
            RTP_VERSION << 6
            | (0x20 if self.padding else 0)
            | (0x10 if self.extension is not None else 0)
            | len(self.csrcs)
        )
        second = (0x80 if self.marker else 0) | self.payload_type
        parts = [_HEADER.pack(first, second, self.sequence, self.timestamp, self.ssrc)]
        parts.extend(struct.pack("!I", csrc) for csrc in self.csrcs)
        if self.extension is not None:
            words = len(self.extension.data) // 4
            parts.append(_EXTENSION_HEADER.pack(self.extension.profile, words))
            parts.append(self.extension.data)
        parts.append(self.payload)
        if self.padding:
            parts.append(bytes(self.padding - 1) + bytes((self.padding,)))
        return b"".join(parts)

    @classmethod
    def parse(cls, data: bytes) -> RtpPacket:
        """The packet in ``data``; ``RtpError`` when it is not a well-formed RTP packet."""
        if not isinstance(data, bytes | bytearray | memoryview):
            raise RtpError(f"RTP packet must be bytes, not {type(data).__name__}")
        data = bytes(data)
        if len(data) < HEADER_SIZE:
            raise RtpError(f"RTP packet too short: {len(data)} bytes, the header needs 12")
        first, second, sequence, timestamp, ssrc = _HEADER.unpack_from(data)
        if first >> 6 != RTP_VERSION:
            raise RtpError(f"not RTP version 2 (version {first >> 6})")
        offset = HEADER_SIZE
        count = first & 0x0F
        if len(data) < offset + 4 * count:
            raise RtpError(f"RTP packet too short for its {count} CSRCs")
        csrcs = struct.unpack_from(f"!{count}I", data, offset)
        offset += 4 * count
        extension = None
        if first & 0x10:
            if len(data) < offset + 4:
                raise RtpError("RTP packet too short for its header extension")
            profile, words = _EXTENSION_HEADER.unpack_from(data, offset)
            offset += 4
            if len(data) < offset + 4 * words:
                raise RtpError(f"RTP header extension of {words} words overruns the packet")
            extension = RtpExtension(profile, data[offset : offset + 4 * words])
            offset += 4 * words
        end = len(data)
        padding = 0
        if first & 0x20:
            padding = data[-1]
            # The count includes itself, so zero is invalid (RFC 3550 section 5.1, P bit).
            if padding == 0 or end - padding < offset:
                raise RtpError(f"bad RTP padding count {padding}")
            end -= padding
        return cls(
            payload_type=second & 0x7F,
            sequence=sequence,
            timestamp=timestamp,
            ssrc=ssrc,
            payload=data[offset:end],
            marker=bool(second & 0x80),
            csrcs=csrcs,
            extension=extension,
            padding=padding,
        )


@dataclass(frozen=True, slots=True)
class TelephoneEvent:
    """The payload of an RFC 4733 telephone-event packet (section 2.3).

    ``duration`` is in RTP timestamp units since the event began (the packet's timestamp);
    ``volume`` is the power level in -dBm0, 0-63.
    """

    event: int
    end: bool = False
    volume: int = 10
    duration: int = 0

    def __post_init__(self) -> None:
        _check_range("event", self.event, 255)
        _check_range("volume", self.volume, 63)
        _check_range("duration", self.duration, 0xFFFF)

    @property
    def digit(self) -> str | None:
        """The DTMF key for events 0-15 (``0-9 * # A-D``); ``None`` for anything else."""
        return DTMF_EVENTS[self.event] if self.event < len(DTMF_EVENTS) else None

    def encode(self) -> bytes:
        # The R bit (0x40) is reserved: sent as zero, ignored when read.
        return _EVENT.pack(self.event, (0x80 if self.end else 0) | self.volume, self.duration)

    @classmethod
    def parse(cls, payload: bytes) -> TelephoneEvent:
        """The event in an RTP payload; ``RtpError`` unless it is exactly one 4-octet event."""
        if not isinstance(payload, bytes | bytearray | memoryview):
            raise RtpError(f"telephone-event payload must be bytes, not {type(payload).__name__}")
        if len(payload) != _EVENT.size:
            raise RtpError(f"telephone-event payload must be 4 octets, got {len(payload)}")
        event, flags, duration = _EVENT.unpack(payload)
        return cls(event=event, end=bool(flags & 0x80), volume=flags & 0x3F, duration=duration)

    @classmethod
    def from_digit(
        cls, digit: str, *, end: bool = False, volume: int = 10, duration: int = 0
    ) -> TelephoneEvent:
        """The event for a DTMF key; ``ValueError`` for anything but ``0-9 * # A-D``."""
        index = DTMF_EVENTS.find(digit.upper()) if len(digit) == 1 else -1
        if index < 0:
            raise ValueError(f"not a DTMF digit: {digit!r}")
        return cls(event=index, end=end, volume=volume, duration=duration)


def rtp_header(
    payload_type: int, sequence: int, timestamp: int, ssrc: int, *, marker: bool = False
) -> bytes:
    """The plain 12-octet header (no CSRC, extension or padding) of a packet we send.

    The hot path of sending: unlike ``RtpPacket`` it checks nothing (struct still refuses
    values that do not fit), which matters at 50 packets a second per call.
    """
    return _HEADER.pack(0x80, (0x80 if marker else 0) | payload_type, sequence, timestamp, ssrc)


def plain_header(data: bytes) -> tuple[int, int, int, int] | None:
    """(payload type, sequence, timestamp, SSRC) of a plain packet, else ``None``.

    Plain: RTP version 2 without padding, extension or CSRCs, and not RTCP, which is what
    phones send. The receive hot path reads those four fields without building an
    ``RtpPacket``; for anything else (``None``) use ``RtpPacket.parse``. The payload of a
    plain packet starts at ``HEADER_SIZE``.
    """
    if len(data) < HEADER_SIZE or data[0] != RTP_VERSION << 6 or data[1] in _RTCP_TYPES:
        return None
    _, second, sequence, timestamp, ssrc = _HEADER.unpack_from(data)
    return second & 0x7F, sequence, timestamp, ssrc


def is_rtcp(data: bytes) -> bool:
    """Whether a datagram on the RTP port is RTCP multiplexed with RTP (RFC 5761 section 4)."""
    return len(data) >= 2 and data[0] >> 6 == RTP_VERSION and data[1] in _RTCP_TYPES


def _check_range(name: str, value: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= high:
        raise ValueError(f"{name} must be an integer in 0-{high}, got {value!r}")
