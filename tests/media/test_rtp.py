from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from voiceplane.media.errors import MediaError, RtpError
from voiceplane.media.rtp import (
    RtpExtension,
    RtpPacket,
    TelephoneEvent,
    is_rtcp,
    plain_header,
    rtp_header,
)

u32 = st.integers(min_value=0, max_value=0xFFFFFFFF)

extensions = st.builds(
    RtpExtension,
    profile=st.integers(min_value=0, max_value=0xFFFF),
    data=st.integers(min_value=0, max_value=8).flatmap(
        lambda words: st.binary(min_size=4 * words, max_size=4 * words)
    ),
)

packets = st.builds(
    RtpPacket,
    payload_type=st.integers(min_value=0, max_value=127),
    sequence=st.integers(min_value=0, max_value=0xFFFF),
    timestamp=u32,
    ssrc=u32,
    payload=st.binary(max_size=200),
    marker=st.booleans(),
    csrcs=st.lists(u32, max_size=15).map(tuple),
    extension=st.none() | extensions,
    padding=st.integers(min_value=0, max_value=255),
)

events = st.builds(
    TelephoneEvent,
    event=st.integers(min_value=0, max_value=255),
    end=st.booleans(),
    volume=st.integers(min_value=0, max_value=63),
    duration=st.integers(min_value=0, max_value=0xFFFF),
)


def test_encode_a_plain_packet_byte_by_byte() -> None:
    packet = RtpPacket(
        payload_type=0, sequence=0x1234, timestamp=0xDEADBEEF, ssrc=0x01020304,
        payload=b"\xff" * 4, marker=True,
    )  # fmt: skip
    assert packet.encode() == bytes.fromhex("80 80 1234 deadbeef 01020304 ffffffff")


def test_parse_a_packet_with_everything() -> None:
    data = (
        bytes([0x80 | 0x20 | 0x10 | 2, 101])  # V=2, P, X, CC=2; no marker, PT 101
        + struct.pack("!HII", 7, 160, 42)
        + struct.pack("!II", 1, 2)  # CSRCs
        + struct.pack("!HH", 0xBEDE, 1) + b"\x10\xaa\x00\x00"  # one-word extension
        + b"\x01\x02\x03\x04"  # payload
        + b"\x00\x00\x03"  # three octets of padding
    )  # fmt: skip
    packet = RtpPacket.parse(data)
    assert packet == RtpPacket(
        payload_type=101, sequence=7, timestamp=160, ssrc=42, payload=b"\x01\x02\x03\x04",
        csrcs=(1, 2), extension=RtpExtension(0xBEDE, b"\x10\xaa\x00\x00"), padding=3,
    )  # fmt: skip
    assert packet.encode() == data


@given(packets)
def test_round_trip(packet: RtpPacket) -> None:
    assert RtpPacket.parse(packet.encode()) == packet


@given(st.binary(max_size=120))
def test_parse_raises_only_rtp_error(data: bytes) -> None:
    try:
        packet = RtpPacket.parse(data)
    except RtpError:
        return
    assert packet.encode() == data or packet.padding  # padding octets need not be zeros


@given(packets, st.data())
def test_truncated_packets_are_refused_or_shorter(packet: RtpPacket, data: st.DataObject) -> None:
    encoded = packet.encode()
    cut = data.draw(st.integers(min_value=0, max_value=len(encoded) - 1))
    try:
        parsed = RtpPacket.parse(encoded[:cut])
    except RtpError:
        return
    assert len(parsed.payload) < len(packet.payload) + packet.padding


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "too short"),
        (b"\x80\x00" + bytes(9), "too short"),
        (b"\x40\x00" + bytes(10), "version"),
        (b"\x00\x00" + bytes(10), "version"),
        (bytes([0x83, 0]) + bytes(10) + bytes(8), "3 CSRCs"),
        (bytes([0x90, 0]) + bytes(10) + b"\x00\x00", "header extension"),
        (bytes([0x90, 0]) + bytes(10) + b"\x00\x00\x00\x02" + bytes(4), "overruns"),
        (bytes([0xA0, 0]) + bytes(10) + b"\x00", "padding count 0"),
        (bytes([0xA0, 0]) + bytes(10) + b"\x05", "padding count 5"),
    ],
)
def test_malformed_packets(data: bytes, message: str) -> None:
    with pytest.raises(RtpError, match=message):
        RtpPacket.parse(data)


def test_rtp_error_is_a_media_error() -> None:
    with pytest.raises(MediaError):
        RtpPacket.parse(b"\x80")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"payload_type": 128},
        {"sequence": 65536},
        {"timestamp": -1},
        {"ssrc": 2**32},
        {"padding": 256},
        {"csrcs": tuple(range(16))},
        {"csrcs": (2**32,)},
        {"payload_type": True},
    ],
)
def test_building_checks_ranges(kwargs: dict[str, object]) -> None:
    fields: dict[str, object] = {"payload_type": 0, "sequence": 0, "timestamp": 0, "ssrc": 0}
    fields.update(kwargs)
    with pytest.raises(ValueError):
        RtpPacket(**fields)  # type: ignore[arg-type]


def test_extension_must_be_whole_words() -> None:
    with pytest.raises(ValueError, match="32-bit words"):
        RtpExtension(1, b"abc")


def test_rtcp_is_recognised() -> None:
    receiver_report = bytes([0x80, 201]) + struct.pack("!HI", 1, 42)
    assert is_rtcp(receiver_report)
    assert not is_rtcp(RtpPacket(0, 1, 2, 3, b"x", marker=True).encode())
    assert not is_rtcp(RtpPacket(101, 1, 2, 3, b"x", marker=True).encode())
    assert not is_rtcp(b"\x80")


# --------------------------------------------------------------------------- RFC 4733


def test_telephone_event_wire_format() -> None:
    # RFC 4733 section 2.3: event, E|R|volume, duration.
    event = TelephoneEvent(event=11, end=True, volume=10, duration=1280)
    assert event.encode() == bytes([11, 0x80 | 10]) + struct.pack("!H", 1280)
    assert event.digit == "#"


def test_reserved_bit_is_ignored() -> None:
    assert TelephoneEvent.parse(bytes([5, 0x40 | 0x80 | 7, 0, 160])) == TelephoneEvent(
        event=5, end=True, volume=7, duration=160
    )


@given(events)
def test_telephone_event_round_trip(event: TelephoneEvent) -> None:
    assert TelephoneEvent.parse(event.encode()) == event


@given(st.binary(max_size=12))
def test_telephone_event_parse_raises_only_rtp_error(payload: bytes) -> None:
    try:
        event = TelephoneEvent.parse(payload)
    except RtpError:
        assert len(payload) != 4
        return
    assert len(payload) == 4 and event.event == payload[0]


@pytest.mark.parametrize(("digit", "code"), [("0", 0), ("9", 9), ("*", 10), ("#", 11), ("a", 12)])
def test_digits(digit: str, code: int) -> None:
    event = TelephoneEvent.from_digit(digit)
    assert event.event == code
    assert event.digit == digit.upper()


@pytest.mark.parametrize("digit", ["", "E", "12", "!"])
def test_not_digits(digit: str) -> None:
    with pytest.raises(ValueError, match="not a DTMF digit"):
        TelephoneEvent.from_digit(digit)


def test_flash_and_other_events_are_no_digit() -> None:
    assert TelephoneEvent(event=16).digit is None
    assert TelephoneEvent(event=200).digit is None


def test_rtp_header_is_the_packet_header() -> None:
    packet = RtpPacket(8, 65535, 2**32 - 1, 0xDEADBEEF, b"x", marker=True)
    assert rtp_header(8, 65535, 2**32 - 1, 0xDEADBEEF, marker=True) + b"x" == packet.encode()


@pytest.mark.parametrize(
    ("packet", "fields"),
    [
        (RtpPacket(0, 7, 8, 9, b"abc", marker=True), (0, 7, 8, 9)),
        (RtpPacket(101, 1, 2, 3, b"abcd"), (101, 1, 2, 3)),
        (RtpPacket(0, 7, 8, 9, b"abc", csrcs=(1,)), None),
        (RtpPacket(0, 7, 8, 9, b"abc", padding=4), None),
        (RtpPacket(0, 7, 8, 9, b"abc", extension=RtpExtension(1, b"")), None),
    ],
)
def test_plain_header(packet: RtpPacket, fields: tuple[int, int, int, int] | None) -> None:
    assert plain_header(packet.encode()) == fields


@pytest.mark.parametrize("data", [b"", b"\x80\x00", bytes([0x80, 200]) + bytes(10), b"junk" * 4])
def test_plain_header_of_what_is_not_a_plain_packet(data: bytes) -> None:
    assert plain_header(data) is None
