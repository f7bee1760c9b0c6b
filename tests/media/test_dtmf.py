from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from voiceplane.media.dtmf import REPEAT_WINDOW, DtmfDetector, KeyPress
from voiceplane.media.rtp import RtpPacket, TelephoneEvent


def press(
    digit: str, timestamp: int, *, ssrc: int = 7, ends: int = 3
) -> list[tuple[RtpPacket, TelephoneEvent]]:
    """The packets a phone sends for one key press: start, updates, then ``ends`` ends."""
    out = []
    for i, duration in enumerate((160, 320, 480)):
        event = TelephoneEvent.from_digit(digit, duration=duration)
        out.append((RtpPacket(101, i, timestamp, ssrc, event.encode(), marker=i == 0), event))
    for i in range(ends):
        event = TelephoneEvent.from_digit(digit, end=True, duration=640)
        out.append((RtpPacket(101, 3 + i, timestamp, ssrc, event.encode()), event))
    return out


def feed(
    detector: DtmfDetector,
    packets: list[tuple[RtpPacket, TelephoneEvent]],
    *,
    start: float = 0.0,
    every: float = 0.02,
) -> list[str]:
    """The digits out of ``packets`` arriving ``every`` seconds from ``start``."""
    return [
        k.digit
        for n, (p, e) in enumerate(packets)
        if (k := detector.feed(p, e, start + n * every)) is not None
    ]


def test_each_press_is_reported_once_at_its_first_end() -> None:
    detector = DtmfDetector()
    packets = press("1", 1000)
    results = [detector.feed(p, e, n * 0.02) for n, (p, e) in enumerate(packets)]
    assert results == [None, None, None, KeyPress("1", 1000, 640), None, None]
    assert KeyPress("1", 1000, 640).seconds == 0.08


def test_the_same_key_twice_is_two_presses() -> None:
    detector = DtmfDetector()
    assert feed(detector, press("5", 1000) + press("5", 3000) + press("#", 5000)) == ["5", "5", "#"]


def test_late_duplicates_of_an_earlier_end_are_ignored() -> None:
    detector = DtmfDetector()
    first, second = press("1", 1000), press("2", 3000)
    assert feed(detector, first[:4] + second + first[4:]) == ["1", "2"]


def test_lost_start_packets_do_not_matter() -> None:
    assert feed(DtmfDetector(), press("7", 1000)[3:]) == ["7"]


def test_a_press_without_end_packets_is_not_reported() -> None:
    assert feed(DtmfDetector(), press("7", 1000, ends=0)) == []


def test_streams_are_told_apart_by_ssrc() -> None:
    detector = DtmfDetector()
    assert feed(detector, press("1", 1000, ssrc=1) + press("2", 1000, ssrc=2)) == ["1", "2"]


def test_non_dtmf_events_are_not_digits() -> None:
    flash = TelephoneEvent(event=16, end=True)
    assert DtmfDetector().feed(RtpPacket(101, 0, 0, 1, flash.encode()), flash, 0.0) is None


def test_a_replayed_capture_is_a_new_press_after_a_pause() -> None:
    """SIPp's play_pcap_audio sends the same bytes each time: same SSRC, timestamp, sequence."""
    detector = DtmfDetector()
    capture = press("5", 43200)
    assert feed(detector, capture, start=0.0) == ["5"]
    assert feed(detector, capture, start=0.5) == ["5"]  # after 0.4 s of silence
    assert feed(detector, capture, start=0.62, every=0.001) == []  # within the window: repeats


def test_late_duplicates_within_the_window_are_repeats() -> None:
    detector = DtmfDetector()
    capture = press("5", 43200)
    assert feed(detector, capture) == ["5"]
    end = capture[-1]
    assert detector.feed(*end, 0.1 + REPEAT_WINDOW - 0.01) is None
    assert detector.feed(*end, 0.1 + 2 * REPEAT_WINDOW - 0.02) is None  # each refreshes it


def test_one_timestamp_with_two_event_codes_is_two_presses() -> None:
    # SIPp's captures of different keys share SSRC and timestamp.
    detector = DtmfDetector()
    assert feed(detector, press("1", 43200) + press("#", 43200)) == ["1", "#"]


@given(
    keys=st.lists(st.sampled_from("0123456789*#ABCD"), min_size=1, max_size=8),
    copies=st.lists(st.integers(1, 3), min_size=48, max_size=48),
    swaps=st.lists(st.integers(0, 47), max_size=10),
)
def test_duplicated_and_reordered_packets_give_each_press_once(
    keys: list[str], copies: list[int], swaps: list[int]
) -> None:
    """Any packet sent up to three times and neighbours swapped: each press comes out once."""
    packets = []
    for n, key in enumerate(keys):
        packets += press(key, 1000 + 8000 * n)
    sent = [p for n, p in enumerate(packets) for _ in range(copies[n % len(copies)])]
    for i in swaps:
        if i + 1 < len(sent):
            sent[i], sent[i + 1] = sent[i + 1], sent[i]
    assert feed(DtmfDetector(), sent, every=0.005) == keys
