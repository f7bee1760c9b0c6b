"""Frames on a private pipe: what is written is read back, a cut stream ends, and a length
no frame can have is refused."""

from __future__ import annotations

import io

import pytest
from hypothesis import given
from hypothesis import strategies as st

from voiceplane.frames import (
    HEADER,
    MAX_FRAME,
    CorruptStream,
    frame,
    read_frame_from,
    write_frame_to,
)

values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text() | st.binary(),
    lambda inner: st.lists(inner) | st.tuples(inner, inner) | st.dictionaries(st.text(), inner),
    max_leaves=20,
)


@given(st.lists(values.filter(lambda value: value is not None), max_size=5))
def test_frames_written_are_read_back_in_order(sent: list[object]) -> None:
    # (None is what the end of a stream reads as: no one sends it as a frame.)
    stream = io.BytesIO()
    for value in sent:
        write_frame_to(stream, value)
    stream.seek(0)
    received = []
    while (value := read_frame_from(stream)) is not None:
        received.append(value)
    assert received == sent


@given(values, st.data())
def test_a_stream_cut_inside_a_frame_ends(value: object, data: st.DataObject) -> None:
    whole = frame(value)
    cut = data.draw(st.integers(min_value=0, max_value=len(whole) - 1))
    assert read_frame_from(io.BytesIO(whole[:cut])) is None


def test_a_length_beyond_any_frame_is_refused() -> None:
    with pytest.raises(CorruptStream, match="corrupt"):
        read_frame_from(io.BytesIO(HEADER.pack(MAX_FRAME + 1) + b"x"))
