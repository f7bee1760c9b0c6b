"""The SIP edge of incoming calls: numbers from URIs, keys from SIP INFO."""

from __future__ import annotations

import pytest

from voiceplane.sip.message import Headers, Request
from voiceplane.sip_service import info_key, number_of


@pytest.mark.parametrize(
    ("uri", "number"),
    [
        ("sip:+918047100000@10.0.0.1", "+918047100000"),
        ("sip:918047100000@10.0.0.1:5060;transport=udp", "+918047100000"),  # "+" added
        ("sips:+91-80-4710-0000@trunk.example.com", "+918047100000"),
        ("tel:+918047100000;phone-context=+91", "+918047100000"),
        ("sip:%2B918047100000@10.0.0.1", "+918047100000"),
        ("sip:alice@example.com", None),
        ("sip:10.0.0.1", None),
        ("not a uri", None),
    ],
)
def test_the_number_of_a_uri(uri: str, number: str | None) -> None:
    assert number_of(uri) == number


def info(content_type: str, body: bytes, method: str = "INFO") -> Request:
    return Request(method, "sip:x@y", Headers([("Content-Type", content_type)]), body)


@pytest.mark.parametrize(
    ("request_", "key"),
    [
        (info("application/dtmf-relay", b"Signal=5\r\nDuration=160\r\n"), "5"),
        (info("application/dtmf-relay", b"Signal= #\r\nDuration=100\r\n"), "#"),
        (info("Application/DTMF-Relay; charset=x", b"signal=a\r\n"), "A"),
        (info("application/dtmf", b"*\r\n"), "*"),
        (info("application/dtmf-relay", b"Signal=x\r\n"), None),
        (info("application/json", b"Signal=5\r\n"), None),
        (info("application/dtmf-relay", b"Signal=5\r\n", method="MESSAGE"), None),
    ],
)
def test_the_key_of_a_sip_info(request_: Request, key: str | None) -> None:
    assert info_key(request_) == key
