"""The Matroska prompt writer: a well-formed EBML tree with one 20 ms block per frame."""

from __future__ import annotations

import struct

import pytest

from voiceplane.media.errors import MediaError
from voiceplane.media.matroska import pcm_to_matroska

CONTAINERS = {
    b"\x1a\x45\xdf\xa3",  # EBML
    b"\x18\x53\x80\x67",  # Segment
    b"\x15\x49\xa9\x66",  # Info
    b"\x16\x54\xae\x6b",  # Tracks
    b"\xae",  # TrackEntry
    b"\xe1",  # Audio
    b"\x1f\x43\xb6\x75",  # Cluster
}


def _id(data: bytes, pos: int) -> tuple[bytes, int]:
    first = data[pos]
    length = next(n for n in range(1, 5) if first & (0x80 >> (n - 1)))
    return data[pos : pos + length], pos + length


def _size(data: bytes, pos: int) -> tuple[int, int]:
    first = data[pos]
    length = next(n for n in range(1, 9) if first & (0x80 >> (n - 1)))
    value = first & (0xFF >> length)
    for byte in data[pos + 1 : pos + length]:
        value = value << 8 | byte
    return value, pos + length


def parse(data: bytes) -> list[tuple[bytes, object]]:
    """An EBML tree: (id, children) for containers, (id, payload) for the rest."""
    out: list[tuple[bytes, object]] = []
    pos = 0
    while pos < len(data):
        element, pos = _id(data, pos)
        size, pos = _size(data, pos)
        payload = data[pos : pos + size]
        assert len(payload) == size, "element runs past its parent"
        out.append((element, parse(payload) if element in CONTAINERS else payload))
        pos += size
    return out


def find(tree: list[tuple[bytes, object]], element: bytes) -> list[object]:
    found: list[object] = []
    for key, value in tree:
        if key == element:
            found.append(value)
        if isinstance(value, list):
            found += find(value, element)
    return found


def test_structure_and_audio_round_trip() -> None:
    pcm = bytes(range(256)) * 250  # 64,000 bytes: 4 s, 200 frames
    tree = parse(pcm_to_matroska(pcm))
    assert [key for key, _ in tree] == [b"\x1a\x45\xdf\xa3", b"\x18\x53\x80\x67"]
    assert find(tree, b"\x42\x82") == [b"matroska"]
    assert find(tree, b"\x86") == [b"A_PCM/INT/LIT"]
    assert find(tree, b"\xb5") == [struct.pack(">d", 8000.0)]
    assert find(tree, b"\x44\x89") == [struct.pack(">d", 4000.0)]  # duration, ms
    blocks = find(tree, b"\xa3")
    assert len(blocks) == 200
    times = []
    for block in blocks:
        assert isinstance(block, bytes)
        assert block[0] == 0x81 and block[3] == 0x80  # track 1, keyframe
        times.append(struct.unpack(">h", block[1:3])[0])
    assert times == [20 * i for i in range(200)]
    assert b"".join(block[4:] for block in blocks if isinstance(block, bytes)) == pcm


def test_long_prompts_start_new_clusters() -> None:
    pcm = b"\x01\x00" * 8000 * 25  # 25 s: block times must stay within 16 bits of ms
    tree = parse(pcm_to_matroska(pcm))
    assert find(tree, b"\xe7") == [b"\x00", (10000).to_bytes(2, "big"), (20000).to_bytes(2, "big")]
    offsets = [struct.unpack(">h", b[1:3])[0] for b in find(tree, b"\xa3") if isinstance(b, bytes)]
    assert max(offsets) == 9980 and len(offsets) == 1250


def test_last_frame_is_padded_with_silence() -> None:
    blocks = find(parse(pcm_to_matroska(b"\x07\x00" * 170)), b"\xa3")
    assert len(blocks) == 2
    last = blocks[1]
    assert isinstance(last, bytes)
    assert last[4:] == b"\x07\x00" * 10 + b"\x00" * 300


def test_odd_length_is_refused() -> None:
    with pytest.raises(MediaError, match="odd length"):
        pcm_to_matroska(b"\x00")
