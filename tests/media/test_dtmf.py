from __future__ import annotations

from voiceplane.media.dtmf import DtmfDetector, KeyPress
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


def feed(detector: DtmfDetector, packets: list[tuple[RtpPacket, TelephoneEvent]]) -> list[str]:
    return [k.digit for p, e in packets if (k := detector.feed(p, e)) is not None]


def test_each_press_is_reported_once_at_its_first_end() -> None:
    detector = DtmfDetector()
    packets = press("1", 1000)
    results = [detector.feed(p, e) for p, e in packets]
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
    assert DtmfDetector().feed(RtpPacket(101, 0, 0, 1, flash.encode()), flash) is None
