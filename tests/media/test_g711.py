from __future__ import annotations

import struct
import warnings

import pytest
from hypothesis import given
from hypothesis import strategies as st

from voiceplane.media import g711

ALL_SAMPLES = struct.pack("<65536h", *range(-32768, 32768))
ALL_CODES = bytes(range(256))
ULAW_MAX = 32124  # largest magnitude mu-law can represent
ALAW_MAX = 32256

s16 = st.integers(min_value=-32768, max_value=32767)


def pcm(*values: int) -> bytes:
    return struct.pack(f"<{len(values)}h", *values)


def values(data: bytes) -> list[int]:
    return list(struct.unpack(f"<{len(data) // 2}h", data))


@pytest.mark.parametrize(
    ("sample", "ulaw", "alaw"),
    [
        (0, 0xFF, 0xD5),
        (32767, 0x80, 0xAA),
        (-32768, 0x00, 0x2A),
        (8, 0xFE, 0xD5),
        (-8, 0x7E, 0x55),
    ],
)
def test_known_codes(sample: int, ulaw: int, alaw: int) -> None:
    assert g711.ulaw_encode(pcm(sample)) == bytes([ulaw])
    assert g711.alaw_encode(pcm(sample)) == bytes([alaw])


@pytest.mark.parametrize(
    ("code", "ulaw", "alaw"),
    [
        (0x00, -32124, -5504),
        (0x80, 32124, 5504),
        (0xFF, 0, 848),
        (0x7F, 0, -848),
        (0xD5, 716, 8),
        (0x55, -716, -8),
        (0xAA, 5372, 32256),
        (0x2A, -5372, -32256),
    ],
)
def test_known_values(code: int, ulaw: int, alaw: int) -> None:
    assert values(g711.ulaw_decode(bytes([code]))) == [ulaw]
    assert values(g711.alaw_decode(bytes([code]))) == [alaw]


def test_matches_the_reference_implementation_exhaustively() -> None:
    # audioop (Sun's g711.c) is the reference; it is gone from Python 3.13.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            import audioop
        except ImportError:
            pytest.skip("no audioop in this Python")
    assert g711.ulaw_encode(ALL_SAMPLES) == audioop.lin2ulaw(ALL_SAMPLES, 2)
    assert g711.alaw_encode(ALL_SAMPLES) == audioop.lin2alaw(ALL_SAMPLES, 2)
    assert g711.ulaw_decode(ALL_CODES) == audioop.ulaw2lin(ALL_CODES, 2)
    assert g711.alaw_decode(ALL_CODES) == audioop.alaw2lin(ALL_CODES, 2)


def test_every_code_survives_decode_then_encode() -> None:
    # mu-law has two zeros (0x7F is "-0"), which encode back as 0xFF.
    expected_ulaw = ALL_CODES.replace(b"\x7f", b"\xff")
    assert g711.ulaw_encode(g711.ulaw_decode(ALL_CODES)) == expected_ulaw
    assert g711.alaw_encode(g711.alaw_decode(ALL_CODES)) == ALL_CODES


def test_encoding_is_monotonic() -> None:
    decoded_u = values(g711.ulaw_decode(g711.ulaw_encode(ALL_SAMPLES)))
    decoded_a = values(g711.alaw_decode(g711.alaw_encode(ALL_SAMPLES)))
    assert decoded_u == sorted(decoded_u)
    assert decoded_a == sorted(decoded_a)
    assert (min(decoded_u), max(decoded_u)) == (-ULAW_MAX, ULAW_MAX)
    assert (min(decoded_a), max(decoded_a)) == (-ALAW_MAX, ALAW_MAX)


@given(st.lists(s16, max_size=400))
def test_round_trip_within_quantisation_error(samples: list[int]) -> None:
    # G.711 is logarithmic: the step grows with the magnitude, about 1/16 of it, and the
    # decoder returns the middle of the step. Beyond the top code the error is clipping.
    data = pcm(*samples)
    for decode, encode, top in (
        (g711.ulaw_decode, g711.ulaw_encode, ULAW_MAX),
        (g711.alaw_decode, g711.alaw_encode, ALAW_MAX),
    ):
        out = values(decode(encode(data)))
        assert len(out) == len(samples)
        for x, y in zip(samples, out, strict=True):
            bound = abs(x) / 32 + 16 if abs(x) <= top else abs(x) - top + top / 32
            assert abs(x - y) <= bound, (x, y)
            assert x * y >= 0 or abs(x) <= 8  # the sign survives, bar the zero step


@given(st.binary(max_size=400))
def test_decode_gives_two_bytes_per_code(data: bytes) -> None:
    assert len(g711.ulaw_decode(data)) == 2 * len(data)
    assert len(g711.alaw_decode(data)) == 2 * len(data)


def test_odd_length_pcm_is_refused() -> None:
    with pytest.raises(ValueError, match="even length"):
        g711.ulaw_encode(b"\x00\x01\x02")
    with pytest.raises(ValueError, match="even length"):
        g711.alaw_encode(b"\x00")


def test_empty_input() -> None:
    assert g711.ulaw_encode(b"") == b"" == g711.alaw_decode(b"")
