"""Frames on a private pipe between a voiceplane process and a child it started.

A frame is a 4-byte big-endian length and a pickle. Both ends are voiceplane's own code on a
pipe nobody else holds, so pickle is safe here and carries our dataclasses as they are. Used
by the callback sender process (``voiceplane.callbacks.child``) and the store's writer
process (``voiceplane.store.writer_child``).
"""

from __future__ import annotations

import pickle
import struct
from typing import IO, Any, Final

HEADER: Final = struct.Struct(">I")
MAX_FRAME: Final = 256 * 1024 * 1024


class CorruptStream(ValueError):
    """A frame's length is beyond any frame we write: the stream is not ours or is broken."""


def frame(value: object) -> bytes:
    """``value`` as one frame."""
    data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    return HEADER.pack(len(data)) + data


def frame_size(header: bytes) -> int:
    """The length of the pickle that follows ``header``; :class:`CorruptStream` if absurd."""
    (size,) = HEADER.unpack(header)
    if size > MAX_FRAME:
        raise CorruptStream(f"a frame of {size} bytes: the stream is corrupt")
    return int(size)


def read_frame_from(stream: IO[bytes]) -> Any | None:
    """The next frame's value from a blocking stream; None at its end (the other side is
    gone), so None itself is never sent as a frame. A stream that ends inside a frame ends
    too."""
    header = stream.read(HEADER.size)
    if header is None or len(header) < HEADER.size:
        return None
    size = frame_size(header)
    data = stream.read(size)
    if data is None or len(data) < size:
        return None
    return pickle.loads(data)


def write_frame_to(stream: IO[bytes], value: object) -> None:
    """Write ``value`` as one frame to a blocking stream and flush it."""
    stream.write(frame(value))
    stream.flush()
