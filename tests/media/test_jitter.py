from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from voiceplane.media.jitter import JitterBuffer

FRAME = 160  # samples: 20 ms at 8 kHz
SSRC = 0x1234


def frame(n: int) -> bytes:
    """A frame whose every sample says which packet it came from (never 0: not silence)."""
    return (n % 30000 + 1).to_bytes(2, "little", signed=True) * FRAME


def numbers(pcm: bytes) -> list[int]:
    """The frames in ``pcm`` by their packet number, 0 for a frame of silence."""
    out = []
    for offset in range(0, len(pcm), 2 * FRAME):
        value = int.from_bytes(pcm[offset : offset + 2], "little", signed=True)
        out.append(value - 1 if value else -1)
    return out


def run(buffer: JitterBuffer, order: list[int], *, first_seq: int = 0) -> bytes:
    out = b"".join(
        buffer.push(SSRC, (first_seq + n) % 65536, (n * FRAME) % 2**32, frame(n)) for n in order
    )
    return out + buffer.flush()


@st.composite
def within_window(draw: st.DrawFn, depth: int = 3) -> list[int]:
    """0..n-1 shuffled so that no packet arrives more than ``depth`` places late."""
    count = draw(st.integers(1, 60))
    delays = draw(st.lists(st.integers(0, depth), min_size=count, max_size=count))
    return sorted(range(count), key=lambda n: (n + delays[n], n))


@given(order=within_window(), first_seq=st.integers(0, 65535))
def test_any_order_within_the_window_comes_out_in_order(order: list[int], first_seq: int) -> None:
    buffer = JitterBuffer(depth=3)
    assert numbers(run(buffer, order, first_seq=first_seq)) == list(range(len(order)))
    stats = buffer.stats
    assert (stats.released, stats.late, stats.duplicates, stats.lost) == (len(order), 0, 0, 0)


@given(order=within_window(), repeats=st.lists(st.integers(0, 59), max_size=20))
def test_duplicates_are_dropped(order: list[int], repeats: list[int]) -> None:
    arrivals = list(order)
    for n in repeats:  # each duplicate right after some copy already sent
        if n in arrivals:
            arrivals.insert(arrivals.index(n) + 1, n)
    buffer = JitterBuffer(depth=3)
    assert numbers(run(buffer, arrivals)) == list(range(len(order)))
    assert buffer.stats.duplicates + buffer.stats.late == len(arrivals) - len(order)


@given(
    order=within_window(),
    lost=st.sets(st.integers(0, 59)),
)
def test_lost_packets_become_silence_of_their_length(order: list[int], lost: set[int]) -> None:
    arrivals = [n for n in order if n not in lost]
    buffer = JitterBuffer(depth=3)
    out = numbers(run(buffer, arrivals))
    if not arrivals:
        assert out == []
        return
    # From the first packet that came to the last: each frame in its place, silence for the rest.
    first, last = min(arrivals), max(arrivals)
    assert out == [n if n not in lost else -1 for n in range(first, last + 1)]


def test_a_packet_later_than_the_window_is_dropped() -> None:
    buffer = JitterBuffer(depth=2)
    out = run(buffer, [1, 2, 3, 4, 0, 5])
    assert numbers(out) == [1, 2, 3, 4, 5]
    assert buffer.stats.late == 1


def test_sequence_numbers_wrap() -> None:
    buffer = JitterBuffer(depth=3)
    assert numbers(run(buffer, [0, 2, 1, 3, 4], first_seq=65534)) == [0, 1, 2, 3, 4]


def test_silence_suppression_is_filled_from_the_timestamps() -> None:
    buffer = JitterBuffer(depth=0)
    out = buffer.push(SSRC, 10, 1000, frame(0)) + buffer.push(SSRC, 11, 1000 + 5 * FRAME, frame(1))
    assert numbers(out) == [0, -1, -1, -1, -1, 1]


def test_an_unbelievable_timestamp_jump_counts_frames_instead() -> None:
    buffer = JitterBuffer(depth=0, max_gap=8000)
    out = buffer.push(SSRC, 10, 0, frame(0)) + buffer.push(SSRC, 12, 2**31 - 1, frame(2))
    assert numbers(out) == [0, -1, 2]  # one lost packet, one frame of silence


def test_a_new_ssrc_starts_a_new_stream() -> None:
    buffer = JitterBuffer(depth=3)
    out = buffer.push(1, 500, 0, frame(0)) + buffer.push(1, 501, FRAME, frame(1))
    out += buffer.push(2, 7, 999999, frame(2)) + buffer.flush()
    assert numbers(out) == [0, 1, 2]
    assert buffer.stats.late == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [((0, 70000, 0, b""), "bad RTP sequence"), ((0, 1, 0, b"\0"), "odd length")],
)
def test_bad_input(args: tuple[int, int, int, bytes], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        JitterBuffer().push(*args)
