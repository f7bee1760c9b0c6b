"""G.711 mu-law and A-law, to and from 16-bit signed little-endian linear PCM.

Table driven: the encoder looks every sample up in a 64 Ki table (built at its first use),
the decoder every byte in a 256-entry table, both built from the reference algorithm (ITU-T
G.711 as implemented in Sun's public-domain g711.c, which is also what audioop did). ``audioop`` is
deprecated and gone in Python 3.13, hence this module.

PCM is always little-endian s16 ("s16le"), the byte order of WAV files and of sox's output,
whatever the machine's own order.
"""

from __future__ import annotations

import functools
from array import array
from sys import byteorder

_SEG_ULAW_END = (0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF)  # 14-bit magnitudes
_SEG_ALAW_END = (0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF)  # 13-bit magnitudes
_ULAW_BIAS = 0x84
_ULAW_CLIP = 8159  # 14-bit; keeps magnitude + bias inside the last segment

ULAW_SILENCE = 0xFF  # encode(0)
ALAW_SILENCE = 0xD5  # encode(0)


def _segment(value: int, ends: tuple[int, ...]) -> int:
    return next((seg for seg, end in enumerate(ends) if value <= end), len(ends))


def _ulaw_encode_sample(sample: int) -> int:
    value = sample >> 2  # the mu-law coder works on 14 bits
    if value < 0:
        value, mask = -value, 0x7F
    else:
        mask = 0xFF
    value = min(value, _ULAW_CLIP) + (_ULAW_BIAS >> 2)
    seg = _segment(value, _SEG_ULAW_END)
    if seg >= 8:
        return 0x7F ^ mask
    return ((seg << 4) | ((value >> (seg + 1)) & 0x0F)) ^ mask


def _ulaw_decode_byte(code: int) -> int:
    code = ~code & 0xFF
    magnitude = (((code & 0x0F) << 3) + _ULAW_BIAS) << ((code & 0x70) >> 4)
    return _ULAW_BIAS - magnitude if code & 0x80 else magnitude - _ULAW_BIAS


def _alaw_encode_sample(sample: int) -> int:
    value = sample >> 3  # the A-law coder works on 13 bits
    if value >= 0:
        mask = 0xD5
    else:
        mask, value = 0x55, -value - 1
    seg = _segment(value, _SEG_ALAW_END)
    if seg >= 8:
        return 0x7F ^ mask
    shift = 1 if seg < 2 else seg
    return ((seg << 4) | ((value >> shift) & 0x0F)) ^ mask


def _alaw_decode_byte(code: int) -> int:
    code ^= 0x55
    magnitude = (code & 0x0F) << 4
    seg = (code & 0x70) >> 4
    if seg == 0:
        magnitude += 8
    else:
        magnitude = (magnitude + 0x108) << (seg - 1)
    return magnitude if code & 0x80 else -magnitude


# Indexed by the sample as an unsigned 16-bit number (its two's-complement bit pattern).
# Built on first use, not at import: 0.3 s that every ``voiceplane`` command paid before.
@functools.cache
def _ulaw_encode_table() -> bytes:
    return bytes(_ulaw_encode_sample(u - 0x10000 if u & 0x8000 else u) for u in range(65536))


@functools.cache
def _alaw_encode_table() -> bytes:
    return bytes(_alaw_encode_sample(u - 0x10000 if u & 0x8000 else u) for u in range(65536))


_ULAW_DECODE = tuple(_ulaw_decode_byte(c) for c in range(256))
_ALAW_DECODE = tuple(_alaw_decode_byte(c) for c in range(256))


def _samples(pcm: bytes) -> array[int]:
    """The samples of s16le ``pcm`` as unsigned 16-bit numbers (table indexes)."""
    if len(pcm) % 2:
        raise ValueError(f"16-bit PCM must have an even length, got {len(pcm)} bytes")
    samples = array("H")
    samples.frombytes(pcm)
    if byteorder == "big":
        samples.byteswap()
    return samples


def ulaw_encode(pcm: bytes) -> bytes:
    """s16le PCM to mu-law, one byte per sample. ``ValueError`` on an odd length."""
    return bytes(map(_ulaw_encode_table().__getitem__, _samples(pcm)))


def alaw_encode(pcm: bytes) -> bytes:
    """s16le PCM to A-law, one byte per sample. ``ValueError`` on an odd length."""
    return bytes(map(_alaw_encode_table().__getitem__, _samples(pcm)))


def _pcm(samples: array[int]) -> bytes:
    if byteorder == "big":
        samples.byteswap()
    return samples.tobytes()


def ulaw_decode(data: bytes) -> bytes:
    """mu-law to s16le PCM; every byte is a valid code."""
    return _pcm(array("h", map(_ULAW_DECODE.__getitem__, data)))


def alaw_decode(data: bytes) -> bytes:
    """A-law to s16le PCM; every byte is a valid code."""
    return _pcm(array("h", map(_ALAW_DECODE.__getitem__, data)))
