"""Dialogs (dialog.py): creation on both sides, in-dialog requests, CSeq order, target refresh."""

from __future__ import annotations

import pytest

from voiceplane.sip.dialog import Dialog, DialogState
from voiceplane.sip.errors import SipParseError
from voiceplane.sip.message import Headers, Request, Response, parse_message
from voiceplane.sip.transaction import make_response

INVITE = Request(
    "INVITE",
    "sip:bob@biloxi.example.com",
    Headers(
        [
            ("Via", "SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKnashds8"),
            ("Max-Forwards", "70"),
            ("To", "Bob <sip:bob@biloxi.example.com>"),
            ("From", '"Alice" <sip:alice@atlanta.example.com>;tag=1928301774'),
            ("Call-ID", "a84b4c76e66710"),
            ("CSeq", "314159 INVITE"),
            ("Contact", "<sip:alice@pc33.atlanta.example.com>"),
            ("Record-Route", "<sip:p1.example.com;lr>"),
            ("Record-Route", "<sip:p2.example.com;lr>"),
        ]
    ),
    b"v=0\r\n",
)


def answer(
    status: int = 200, *, tag: str | None = "a6c85cf", contact: str | None = None
) -> Response:
    extra = (("Contact", contact),) if contact else (("Contact", "<sip:bob@192.0.2.4:5062>"),)
    return make_response(INVITE, status, "OK", to_tag=tag, extra=extra)


def uac_dialog() -> Dialog:
    return Dialog.as_uac(INVITE, answer(), user_agent="test-ua")


def uas_dialog() -> Dialog:
    return Dialog.as_uas(
        INVITE,
        local_tag="a6c85cf",
        local_contact="<sip:bob@192.0.2.4:5062>",
        local_seq=100,
        user_agent="test-ua",
    )


def test_uac_dialog_from_a_2xx() -> None:
    d = uac_dialog()
    assert d.id == ("a84b4c76e66710", "1928301774", "a6c85cf")
    assert d.local_uri == '"Alice" <sip:alice@atlanta.example.com>'
    assert d.remote_uri == "Bob <sip:bob@biloxi.example.com>"
    assert d.remote_target == "sip:bob@192.0.2.4:5062"
    assert d.local_contact == "<sip:alice@pc33.atlanta.example.com>"
    assert d.local_seq == 314159 and d.remote_seq is None
    # section 12.1.2: the route set is the Record-Route of the response, reversed
    assert d.route_set == ("<sip:p2.example.com;lr>", "<sip:p1.example.com;lr>")
    assert d.state is DialogState.CONFIRMED


def test_uac_early_dialog_from_a_tagged_provisional() -> None:
    ringing = make_response(INVITE, 180, "Ringing", to_tag="early")
    d = Dialog.as_uac(INVITE, ringing)
    assert d.state is DialogState.EARLY and d.remote_tag == "early"
    assert d.remote_target == INVITE.uri  # no Contact: the Request-URI


def test_uac_dialog_needs_a_to_tag() -> None:
    with pytest.raises(SipParseError, match="To tag"):
        Dialog.as_uac(INVITE, answer(tag=None))


def test_uas_dialog_from_the_invite() -> None:
    d = uas_dialog()
    assert d.id == ("a84b4c76e66710", "a6c85cf", "1928301774")
    assert d.local_uri == "Bob <sip:bob@biloxi.example.com>"
    assert d.remote_uri == '"Alice" <sip:alice@atlanta.example.com>'
    assert d.remote_target == "sip:alice@pc33.atlanta.example.com"
    assert d.remote_seq == 314159 and d.local_seq == 100
    assert d.route_set == ("<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>")  # in order
    assert d.state is DialogState.EARLY


def test_new_request_inside_the_dialog() -> None:
    d = uac_dialog()
    bye = d.new_request(
        "BYE",
        via="SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKbye",
        extra=(("Reason", "Q.850;cause=16"),),
    )
    assert (bye.method, bye.uri) == ("BYE", "sip:bob@192.0.2.4:5062")
    assert (bye.cseq.number, bye.cseq.method) == (314160, "BYE")
    assert d.local_seq == 314160
    assert bye.from_.tag == "1928301774" and bye.to.tag == "a6c85cf"
    assert bye.from_.display == '"Alice"'
    assert bye.call_id == "a84b4c76e66710"
    assert bye.headers.get_all("route") == ["<sip:p2.example.com;lr>", "<sip:p1.example.com;lr>"]
    assert "contact" not in bye.headers  # BYE is no target refresh
    assert bye.headers.get("user-agent") == "test-ua"
    assert bye.headers.get("reason") == "Q.850;cause=16"
    assert bye.headers.get("max-forwards") == "70"
    assert parse_message(bye.encode()).headers.get("cseq") == "314160 BYE"


def test_reinvite_carries_contact_and_body() -> None:
    d = uac_dialog()
    reinvite = d.new_request(
        "INVITE",
        via="SIP/2.0/UDP h;branch=z9hG4bKre",
        body=b"v=0\r\n",
        content_type="application/sdp",
    )
    assert reinvite.headers.get("contact") == "<sip:alice@pc33.atlanta.example.com>"
    assert reinvite.headers.get("content-type") == "application/sdp"
    assert reinvite.body == b"v=0\r\n"
    assert reinvite.cseq.number == 314160


def test_ack_and_explicit_cseq_do_not_advance_the_local_sequence() -> None:
    d = uac_dialog()
    ack = d.new_request("ACK", via="SIP/2.0/UDP h;branch=z9hG4bKack", cseq=314159)
    assert (ack.cseq.number, ack.cseq.method) == (314159, "ACK")
    assert d.local_seq == 314159
    assert d.new_request("INFO", via="SIP/2.0/UDP h;branch=z9hG4bKi").cseq.number == 314160


def test_requests_from_one_side_match_the_other_sides_dialog() -> None:
    uac, uas = uac_dialog(), uas_dialog()
    bye = parse_message(uac.new_request("BYE", via="SIP/2.0/UDP h;branch=z9hG4bK1").encode())
    assert (bye.call_id, bye.to.tag, bye.from_.tag) == uas.id
    back = parse_message(uas.new_request("BYE", via="SIP/2.0/UDP h;branch=z9hG4bK2").encode())
    assert (back.call_id, back.to.tag, back.from_.tag) == uac.id
    assert isinstance(back, Request)
    assert back.uri == "sip:alice@pc33.atlanta.example.com"
    assert back.cseq.number == 101


def test_remote_cseq_must_grow() -> None:
    uac = uac_dialog()
    uas = uas_dialog()

    def request(method: str, number: int) -> Request:
        return Request(method, "sip:x@y", INVITE.headers.set("cseq", f"{number} {method}"))

    assert uac.remote_seq is None
    assert uac.accept_remote_request(request("INFO", 5))  # the first one sets the number
    assert uac.remote_seq == 5
    assert not uac.accept_remote_request(request("BYE", 5))  # equal is out of order
    assert not uac.accept_remote_request(request("BYE", 4))
    assert uac.accept_remote_request(request("BYE", 6)) and uac.remote_seq == 6
    # the UAS dialog starts from the INVITE's number
    assert not uas.accept_remote_request(request("BYE", 314159))
    assert uas.accept_remote_request(request("BYE", 314160))
    # ACK and CANCEL reuse the INVITE's number and never count as out of order
    assert uas.accept_remote_request(request("ACK", 1))
    assert uas.accept_remote_request(request("CANCEL", 1))
    assert uas.remote_seq == 314160


def test_target_refresh() -> None:
    d = uac_dialog()
    d.refresh_target(answer(contact="<sip:bob@198.51.100.7:5070;transport=tcp>;expires=60"))
    assert d.remote_target == "sip:bob@198.51.100.7:5070;transport=tcp"
    d.refresh_target(make_response(INVITE, 200, "OK", to_tag="a6c85cf"))  # no Contact
    assert d.remote_target == "sip:bob@198.51.100.7:5070;transport=tcp"
    d.refresh_target(answer(contact="not an address"))  # unreadable Contact: kept
    assert d.remote_target == "sip:bob@198.51.100.7:5070;transport=tcp"
