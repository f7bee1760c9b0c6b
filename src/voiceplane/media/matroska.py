"""PCM as a minimal Matroska file with one 20 ms block per frame: how prompts go to rtpengine.

rtpengine (10.5) sends the RTP of ``play media`` at the pace of the packets its ffmpeg
demuxer hands it. A WAV file comes out in 4 KiB packets (256 ms of 8 kHz audio), which
rtpengine sends as bursts at 10 ms intervals followed by gaps of 60-120 ms; in a Matroska
file each SimpleBlock is one packet, so with a block per 20 ms frame the prompt leaves at
20 ms intervals. The audio stays lossless (``A_PCM/INT/LIT``, which rtpengine decodes and
encodes in the caller's codec). Only what that needs is written: EBML header, Info (with
the duration), one audio track, and clusters of SimpleBlocks (RFC 9559).
"""

from __future__ import annotations

import struct

from .audio import SAMPLE_RATE, SAMPLE_WIDTH
from .errors import MediaError

__all__ = ["FRAME_MS", "pcm_to_matroska"]

FRAME_MS = 20
_FRAME_BYTES = SAMPLE_RATE * FRAME_MS // 1000 * SAMPLE_WIDTH
# A SimpleBlock's time is a signed 16-bit offset in ms from its cluster's: a new cluster
# well before 32.767 s.
_CLUSTER_FRAMES = 10_000 // FRAME_MS

# Element IDs (RFC 9559 section 5.1 and RFC 8794 for the EBML header).
_EBML = b"\x1a\x45\xdf\xa3"
_EBML_VERSION, _EBML_READ_VERSION = b"\x42\x86", b"\x42\xf7"
_EBML_MAX_ID_LENGTH, _EBML_MAX_SIZE_LENGTH = b"\x42\xf2", b"\x42\xf3"
_DOC_TYPE, _DOC_TYPE_VERSION, _DOC_TYPE_READ_VERSION = b"\x42\x82", b"\x42\x87", b"\x42\x85"
_SEGMENT = b"\x18\x53\x80\x67"
_INFO, _TIMESTAMP_SCALE, _DURATION = b"\x15\x49\xa9\x66", b"\x2a\xd7\xb1", b"\x44\x89"
_TRACKS, _TRACK_ENTRY = b"\x16\x54\xae\x6b", b"\xae"
_TRACK_NUMBER, _TRACK_UID, _TRACK_TYPE, _CODEC_ID = b"\xd7", b"\x73\xc5", b"\x83", b"\x86"
_AUDIO, _SAMPLING_FREQUENCY, _CHANNELS, _BIT_DEPTH = b"\xe1", b"\xb5", b"\x9f", b"\x62\x64"
_CLUSTER, _CLUSTER_TIMESTAMP, _SIMPLE_BLOCK = b"\x1f\x43\xb6\x75", b"\xe7", b"\xa3"

_AUDIO_TRACK = 2
_KEYFRAME = 0x80


def pcm_to_matroska(pcm: bytes) -> bytes:
    """8 kHz mono s16le ``pcm`` as a Matroska file of 20 ms blocks (the last padded)."""
    if len(pcm) % SAMPLE_WIDTH:
        raise MediaError(f"PCM must be 16-bit samples: {len(pcm)} bytes is an odd length")
    pcm += b"\0" * (-len(pcm) % _FRAME_BYTES)
    frames = [pcm[i : i + _FRAME_BYTES] for i in range(0, len(pcm), _FRAME_BYTES)]
    header = _element(
        _EBML,
        _uint(_EBML_VERSION, 1)
        + _uint(_EBML_READ_VERSION, 1)
        + _uint(_EBML_MAX_ID_LENGTH, 4)
        + _uint(_EBML_MAX_SIZE_LENGTH, 8)
        + _element(_DOC_TYPE, b"matroska")
        + _uint(_DOC_TYPE_VERSION, 4)
        + _uint(_DOC_TYPE_READ_VERSION, 2),
    )
    info = _element(
        _INFO,
        _uint(_TIMESTAMP_SCALE, 1_000_000)  # timestamps in ms
        + _element(_DURATION, struct.pack(">d", len(frames) * FRAME_MS)),
    )
    audio = _element(
        _AUDIO,
        _element(_SAMPLING_FREQUENCY, struct.pack(">d", SAMPLE_RATE))
        + _uint(_CHANNELS, 1)
        + _uint(_BIT_DEPTH, SAMPLE_WIDTH * 8),
    )
    track = _element(
        _TRACK_ENTRY,
        _uint(_TRACK_NUMBER, 1)
        + _uint(_TRACK_UID, 1)
        + _uint(_TRACK_TYPE, _AUDIO_TRACK)
        + _element(_CODEC_ID, b"A_PCM/INT/LIT")
        + audio,
    )
    clusters = []
    for first in range(0, len(frames), _CLUSTER_FRAMES):
        blocks = [_uint(_CLUSTER_TIMESTAMP, first * FRAME_MS)]
        for offset, frame in enumerate(frames[first : first + _CLUSTER_FRAMES]):
            # Track number 1 as a one-byte vint, the time from the cluster's, flags.
            head = b"\x81" + struct.pack(">hB", offset * FRAME_MS, _KEYFRAME)
            blocks.append(_element(_SIMPLE_BLOCK, head + frame))
        clusters.append(_element(_CLUSTER, b"".join(blocks)))
    segment = _element(_SEGMENT, info + _element(_TRACKS, track) + b"".join(clusters))
    return header + segment


def _element(element_id: bytes, payload: bytes) -> bytes:
    # Sizes always as 8-byte vints (marker 0x01 then 7 bytes): simple, and valid EBML.
    return element_id + b"\x01" + len(payload).to_bytes(7, "big") + payload


def _uint(element_id: bytes, value: int) -> bytes:
    return _element(element_id, value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big"))
