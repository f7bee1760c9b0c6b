"""The endpoint (endpoint.py): routing, answers it gives on its own, broken input, transports."""

from __future__ import annotations

import gc
import random
from collections import Counter
from collections.abc import Callable
from typing import Literal, TypedDict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.sip.calls import SDP_A, SDP_A2, SDP_B, SDP_B2, Pair, state_of
from voiceplane.sip.addressing import Address
from voiceplane.sip.endpoint import (
    MalformedMessage,
    RequestAbandoned,
    RequestFinished,
    RequestReceived,
    SipEndpoint,
)
from voiceplane.sip.errors import LocalProtocolError
from voiceplane.sip.headers import get_param
from voiceplane.sip.legs import (
    CallEnded,
    IncomingCall,
    IncomingLeg,
    Leg,
    LegState,
    ReinviteAbandoned,
    ReinviteFinished,
    ReinviteReceived,
)
from voiceplane.sip.message import Request, Response, parse_message
from voiceplane.sip.outcome import EndCause, Party
from voiceplane.sip.transaction import build_cancel, make_response

X = Address("10.0.0.9", 5060)  # a peer that is not an endpoint: we inject what it sends


class RawFields(TypedDict, total=False):
    """The header fields of ``raw`` a test may corrupt."""

    uri: str
    via: str
    from_: str
    to: str
    call_id: str
    cseq: str
    extra: str


def raw(
    method: str = "INVITE",
    *,
    uri: str = "sip:123@10.0.0.2",
    branch: str = "z9hG4bKraw1",
    via: str = "SIP/2.0/UDP 10.0.0.9:5060",
    from_: str = "<sip:x@10.0.0.9>;tag=f1",
    to: str = "<sip:123@10.0.0.2>",
    call_id: str = "raw-call-1",
    cseq: str | None = None,
    extra: str = "",
    body: bytes = b"",
    length: str | None = None,
    version: str = "SIP/2.0",
) -> bytes:
    head = (
        f"{method} {uri} {version}\r\n"
        f"Via: {via};branch={branch}\r\n"
        "Max-Forwards: 70\r\n"
        f"From: {from_}\r\n"
        f"To: {to}\r\n"
        f"Call-ID: {call_id}\r\n"
        f"CSeq: {cseq or f'1 {method}'}\r\n"
        f"{extra}"
        f"Content-Length: {len(body) if length is None else length}\r\n\r\n"
    )
    return head.encode() + body


def answers(p: Pair, src: Address | None = None) -> list[Response]:
    """Every response ``b`` (or ``src``) put on the wire."""
    return [m for m in p.link.messages_sent(src or p.B) if isinstance(m, Response)]


# --- requests the layer above answers -------------------------------------------------------------


def test_options_is_handed_up_and_answered_with_allow() -> None:
    p = Pair()
    tx = p.a.request("OPTIONS", uri="sip:10.0.0.2", now=0.0, destination=p.B)
    p.link.deliver()
    [received] = p.link.of_type(p.B, RequestReceived)
    assert received.request.method == "OPTIONS" and received.leg is None
    p.b.respond(received.transaction, 200, "OK", p.now)
    p.link.deliver()
    [finished] = p.link.of_type(p.A, RequestFinished)
    assert finished.transaction is tx and finished.status == 200
    assert finished.response is not None
    allow = finished.response.headers.get_all("allow")
    assert {"INVITE", "ACK", "CANCEL", "BYE", "OPTIONS"} <= set(allow)
    assert finished.response.to.tag  # a final response carries a To tag


def test_unknown_method_can_be_answered_405_with_allow() -> None:
    p = Pair()
    p.link.inject(raw("MESSAGE", body=b"hello", extra="Content-Type: text/plain\r\n"), X, p.B)
    [received] = p.link.of_type(p.B, RequestReceived)
    assert received.request.body == b"hello"
    p.b.respond(received.transaction, 405, "Method Not Allowed", p.now)
    p.link.deliver()
    [response] = answers(p)
    assert response.status == 405 and response.headers.get("allow") is not None
    assert p.link.sent[-1][1] == X


def test_in_dialog_request_is_handed_up_with_its_leg() -> None:
    p = Pair()
    leg, inc = p.answered()
    assert leg.dialog is not None
    info = leg.dialog.new_request(
        "INFO",
        via="SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKinfo",
        body=b"Signal=5\r\n",
        extra=(("Content-Type", "application/dtmf-relay"),),
    )
    p.link.inject(info.encode(), p.A, p.B)
    [received] = p.link.of_type(p.B, RequestReceived)
    assert received.leg is inc and received.request.body == b"Signal=5\r\n"
    p.b.respond(received.transaction, 200, "OK", p.now)
    p.link.deliver()
    assert (answers(p)[-1].status, answers(p)[-1].cseq.method) == (200, "INFO")
    assert p.a.stats.stray_responses == 1  # the injected INFO had no transaction at A


# --- answers the endpoint gives itself ----------------------------------------------------------


def test_cancel_for_an_unknown_transaction_gets_481() -> None:
    p = Pair()
    p.link.inject(raw("CANCEL", branch="z9hG4bKnosuch"), X, p.B)
    [response] = answers(p)
    assert (response.status, response.cseq.method) == (481, "CANCEL")
    assert p.link.of_type(p.B, IncomingCall) == []


def test_cancel_after_the_final_response_is_answered_200_and_changes_nothing() -> None:
    p = Pair()
    leg, inc = p.answered()
    [invite] = p.link.messages_sent(p.A, "INVITE")
    assert isinstance(invite, Request)
    cancel = Request(
        "CANCEL", invite.uri, invite.headers.set("cseq", f"{invite.cseq.number} CANCEL")
    )
    p.link.inject(cancel.encode(), p.A, p.B)
    assert (answers(p)[-1].status, answers(p)[-1].cseq.method) == (200, "CANCEL")
    assert inc.state is LegState.CONFIRMED and inc.outcome is None


@pytest.mark.parametrize("to", ["<sip:123@10.0.0.2>;tag=unknown", "<sip:123@10.0.0.2>"])
def test_bye_for_an_unknown_dialog_gets_481(to: str) -> None:
    p = Pair()
    p.link.inject(raw("BYE", to=to), X, p.B)
    [response] = answers(p)
    assert (response.status, response.cseq.method) == (481, "BYE")
    assert p.b.events() == [] and p.link.events[p.B] == []


def test_ack_for_an_unknown_dialog_is_dropped() -> None:
    p = Pair()
    p.link.inject(raw("ACK", to="<sip:123@10.0.0.2>;tag=unknown"), X, p.B)
    assert answers(p) == [] and p.link.events[p.B] == []


def test_out_of_order_cseq_in_a_dialog_gets_500() -> None:
    p = Pair()
    leg, inc = p.answered()
    assert leg.dialog is not None
    [invite] = p.link.messages_sent(p.A, "INVITE")
    stale = leg.dialog.new_request(
        "BYE", via="SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKold", cseq=invite.cseq.number
    )  # not above the INVITE's
    p.link.inject(stale.encode(), p.A, p.B)
    response = answers(p)[-1]
    assert (response.status, response.cseq.method) == (500, "BYE")
    assert response.headers.get("retry-after") is not None
    assert inc.state is LegState.CONFIRMED and inc.outcome is None
    p.at_a(leg.hangup)  # a BYE in order still works
    assert inc.outcome is not None and inc.outcome.cause is EndCause.REMOTE_HANGUP


# --- broken input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (raw(length="abc"), "Content-Length"),
        (raw(body=b"v=0", length="30"), "shorter than Content-Length"),
        (raw(cseq="1 BYE"), "does not match"),
        (raw(cseq="x INVITE"), "bad CSeq"),
        (raw("OPTIONS", extra="Bad Header Line\r\n"), "bad header line"),
        (raw(via="SIP/2.0/UDP 10.0.0.9:99999"), "bad port"),
    ],
)
def test_malformed_request_with_readable_key_headers_gets_400(data: bytes, reason: str) -> None:
    p = Pair()
    p.link.inject(data, X, p.B)
    [(src, dst, answer)] = [sent for sent in p.link.sent if sent[0] == p.B]
    assert dst == X
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line.startswith(b"SIP/2.0 400 Bad Request (")
    assert reason.encode() in status_line
    # the key headers are copied, broken or not (section 8.2.6.2)
    assert b"Call-ID: raw-call-1\r\n" in rest and b"Via: SIP/2.0/UDP 10.0.0.9" in rest
    [malformed] = p.link.of_type(p.B, MalformedMessage)
    assert malformed.source == X and reason in malformed.reason
    assert p.b.stats.malformed == 1 and p.b.stats.received == 1
    assert p.link.of_type(p.B, IncomingCall) == []


def test_unsupported_version_gets_505() -> None:
    p = Pair()
    p.link.inject(raw(version="SIP/3.0"), X, p.B)
    [response] = answers(p)
    assert response.status == 505


@pytest.mark.parametrize(
    "data",
    [raw(length="abc"), raw("OPTIONS", extra="Bad Header Line\r\n"), raw(version="SIP/3.0")],
)
def test_stateless_answers_to_broken_requests_carry_a_to_tag(data: bytes) -> None:
    # Section 8.2.6.2: every response but 100 carries a To tag, the stateless ones too.
    p = Pair()
    p.link.inject(data, X, p.B)
    [response] = answers(p)
    assert response.status in (400, 505)
    assert response.to.tag and response.to.uri == "sip:123@10.0.0.2"
    p.link.inject(raw(to="<sip:123@10.0.0.2>;tag=theirs", length="abc"), X, p.B)
    assert answers(p)[-1].to.tag == "theirs"  # a tag already there is kept


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00\xff\xfe\r\n\r\n",
        b"hello world\r\n\r\n",
        raw().replace(b"Call-ID: raw-call-1\r\n", b""),  # a request we cannot answer
        raw("ACK", length="abc"),  # an ACK is never answered
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 10.0.0.2;branch=z9hG4bKx\r\n\r\n",  # a response
        b"SIP/2.0 200 OK\r\nVia: nonsense\r\nFrom: <sip:a@b>\r\nTo: <sip:a@b>\r\n"
        b"Call-ID: c\r\nCSeq: 1 INVITE\r\n\r\n",
    ],
)
def test_unreadable_input_is_dropped_with_an_event(data: bytes) -> None:
    p = Pair()
    p.link.inject(data, X, p.B)
    assert answers(p) == []
    [malformed] = p.link.of_type(p.B, MalformedMessage)
    assert malformed.source == X and malformed.reason
    assert p.b.next_deadline() is None


@pytest.mark.parametrize(
    ("header", "value"), [("To", "garbage"), ("From", "nonsense;tag=f1"), ("From", "<sip:x@y")]
)
def test_invite_with_an_unreadable_from_or_to_gets_400_and_leaves_no_state(
    header: str, value: str
) -> None:
    p = Pair()
    data = raw(to=value) if header == "To" else raw(from_=value)
    p.link.inject(data, X, p.B)
    p.link.advance(0.3)
    assert [r.status for r in answers(p)] == [400]  # and no 100 Trying after it
    assert p.link.of_type(p.B, IncomingCall) == [] and p.b.active_legs == 0
    assert len(p.link.of_type(p.B, MalformedMessage)) == 1
    p.link.inject(data, X, p.B)  # a retransmission gets the same answer
    assert [r.status for r in answers(p)] == [400, 400]
    p.link.advance(60.0)
    assert p.b.next_deadline() is None


# --- transports and addresses -------------------------------------------------------------------


def test_transport_failure_ends_a_call_attempt_with_503() -> None:
    p = Pair()
    p.link.drop = lambda data, src, dst: True
    leg = p.call()
    p.link.advance(1.0)
    p.a.transport_failed(Address("10.9.9.9", 5060), p.now)  # somewhere else: no effect
    assert leg.outcome is None
    p.a.transport_failed(p.B, p.now)
    p.link.deliver()
    assert leg.outcome is not None
    assert (leg.outcome.cause, leg.outcome.ended_by) == (EndCause.TRANSPORT_ERROR, Party.REMOTE)
    assert (leg.outcome.status, leg.outcome.reason) == (503, "Service Unavailable")
    assert [e.leg for e in p.link.of_type(p.A, CallEnded)] == [leg]
    sent = len(p.link.sent)
    p.link.advance(40.0)
    assert len(p.link.sent) == sent  # nothing retransmitted after the failure
    assert p.a.active_legs == 0


def test_transport_failure_of_a_request_is_reported_as_503() -> None:
    p = Pair("tcp")
    tx = p.a.request("OPTIONS", uri="sip:10.0.0.2;transport=tcp", now=0.0, destination=p.B)
    p.a.transport_failed(p.B, 0.0)
    [finished] = p.a.events()
    assert isinstance(finished, RequestFinished)
    assert (finished.transaction, finished.status, finished.response) == (tx, 503, None)


def test_responses_go_back_where_the_request_came_from() -> None:
    p = Pair()
    nat = Address("203.0.113.5", 40000)
    p.link.inject(raw("OPTIONS", via="SIP/2.0/UDP 192.168.1.10:5060;rport"), nat, p.B)
    [received] = p.link.of_type(p.B, RequestReceived)
    p.b.respond(received.transaction, 200, "OK", p.now)
    p.link.deliver()
    assert p.link.sent[-1][1] == nat
    via = answers(p)[-1].top_via
    assert (via.host, via.port) == ("192.168.1.10", 5060)
    assert get_param(via.params, "received") == "203.0.113.5"
    assert get_param(via.params, "rport") == "40000"


def test_received_is_stamped_without_rport_when_the_host_differs() -> None:
    p = Pair()
    p.link.inject(raw("OPTIONS", via="SIP/2.0/UDP client.example.com:5060"), X, p.B)
    [received] = p.link.of_type(p.B, RequestReceived)
    via = received.request.top_via
    assert get_param(via.params, "received") == "10.0.0.9"
    assert via.rport is None


def test_retransmitted_invite_gets_the_last_provisional_and_is_one_call() -> None:
    p = Pair()
    p.drop_first(2, lambda data, src, dst: src == p.B)  # the 100 and the 180 are lost
    leg = p.call()
    inc = p.incoming()
    p.link.advance(0.3)
    p.at_b(inc.ring)
    assert leg.state is LegState.CALLING
    p.link.advance(1.0)  # the INVITE again at 0.5: the 180 again
    assert p.link.times_sent(p.A, "INVITE") == [0.0, 0.5]
    assert p.link.times_sent(p.B, "180") == [0.3, 0.5]
    assert state_of(leg) is LegState.RINGING
    assert len(p.link.of_type(p.B, IncomingCall)) == 1


def test_invite_to_the_uri_host_and_refused_transports() -> None:
    a = SipEndpoint(local={"udp": Address("10.0.0.1", 5060)})
    leg = a.invite(to_uri="sip:bob@10.0.0.2:5080", from_uri="sip:alice@10.0.0.1", now=0.0)
    [(data, dest)] = a.datagrams_to_send()
    assert dest == Address("10.0.0.2", 5080, "udp") and leg.destination == dest
    request = parse_message(data)
    assert isinstance(request, Request) and request.body == b""
    assert "content-type" not in request.headers
    with pytest.raises(ValueError):
        a.invite(to_uri="sip:bob@10.0.0.2;transport=tcp", from_uri="sip:alice@10.0.0.1", now=0.0)
    with pytest.raises(ValueError):
        SipEndpoint(local={})


def test_invite_headers() -> None:
    p = Pair()
    p.call(display_name="Alice", extra_headers=(("X-Call-Ref", "42"),))
    [invite] = p.link.messages_sent(p.A, "INVITE")
    assert isinstance(invite, Request)
    assert invite.from_.display == '"Alice"' and invite.from_.tag
    assert invite.to.tag is None
    assert invite.top_via.branch is not None and invite.top_via.branch.startswith("z9hG4bK")
    assert invite.top_via.rport == ""
    assert invite.headers.get("x-call-ref") == "42"
    assert invite.headers.get("content-type") == "application/sdp" and invite.body == SDP_A
    assert invite.headers.get("max-forwards") == "70"


def test_unpinned_requests_follow_the_remote_target() -> None:
    p = Pair(pin_outbound=False)
    leg, inc = p.answered()
    assert leg.next_hop is None
    p.at_a(leg.hangup)
    [bye] = p.link.messages_sent(p.A, "BYE")
    assert isinstance(bye, Request)
    assert bye.uri == "sip:voiceplane@10.0.0.2:5060"  # the callee's Contact
    assert inc.outcome is not None


def test_queues_are_drained_once() -> None:
    p = Pair()
    p.a.invite(
        to_uri="sip:123@10.0.0.2", from_uri="sip:999@10.0.0.1", now=0.0, destination=p.B, sdp=SDP_A
    )
    assert len(p.a.datagrams_to_send()) == 1
    assert p.a.datagrams_to_send() == []
    assert p.a.next_deadline() == 0.5  # timer A
    assert p.a.active_legs == 1


def test_answer_sdp_gets_a_content_type() -> None:
    p = Pair()
    p.answered()
    ok = [r for r in answers(p) if r.status == 200][0]
    assert ok.body == SDP_B and ok.headers.get("content-type") == "application/sdp"
    assert ok.headers.get("contact") == "<sip:voiceplane@10.0.0.2:5060>"


# --- the endpoint never raises on what the network sends ----------------------------------------

field_text = st.text(st.characters(codec="utf-8", exclude_characters="\r\n"), max_size=30)


@settings(max_examples=150, deadline=None)
@given(
    method=st.sampled_from(["INVITE", "BYE", "CANCEL", "ACK", "OPTIONS", "INFO", "SIP/2.0"]),
    in_dialog=st.booleans(),
    field=st.sampled_from(["uri", "via", "from_", "to", "call_id", "cseq", "extra", "none"]),
    value=field_text,
    extra_name=st.sampled_from(["Reason", "Contact", "Record-Route", "Content-Length", "Route"]),
)
def test_endpoint_survives_corrupted_messages(
    method: str,
    in_dialog: bool,
    field: Literal["uri", "via", "from_", "to", "call_id", "cseq", "extra", "none"],
    value: str,
    extra_name: str,
) -> None:
    p = Pair()
    fields: RawFields = {}
    if in_dialog:
        leg, inc = p.answered()
        assert inc.dialog is not None
        fields = {
            "call_id": inc.dialog.call_id,
            "to": f"<sip:123@10.0.0.2>;tag={inc.dialog.local_tag}",
            "from_": f"<sip:999@10.0.0.1>;tag={inc.dialog.remote_tag}",
            "cseq": f"{(inc.dialog.remote_seq or 0) + 1} {method}",
        }
    if field == "extra":
        fields["extra"] = f"{extra_name}: {value}\r\n"
    elif field != "none":
        fields[field] = value
    if method == "SIP/2.0":  # a response, to something we may or may not have sent
        data = raw("X", **fields).replace(b"X sip:123@10.0.0.2 SIP/2.0", b"SIP/2.0 200 OK", 1)
    else:
        data = raw(method, **fields)
    p.b.receive(data, p.A, p.now)
    p.link.deliver()
    p.link.advance(70.0)


@given(st.integers(0, 2**32))
def test_new_cseq_draws_what_randint_draws(seed: int) -> None:
    # The first CSeq of a call comes from the endpoint's RNG as randint(1, 2**20) would:
    # same numbers from the same seed, so seeded tests keep their values.
    endpoint = SipEndpoint(local={"udp": Address("127.0.0.1", 5060)}, rng=random.Random(seed))
    reference = random.Random(seed)
    assert [endpoint._new_cseq() for _ in range(50)] == [
        reference.randint(1, 2**20) for _ in range(50)
    ]


# --- early dialogs, cancelled re-INVITEs, failed transports --------------------------------------


def _early_request(p: Pair, inc: IncomingLeg, method: str, branch: str, *, body: bytes = b"",
                   extra: tuple[tuple[str, str], ...] = ()) -> None:  # fmt: skip
    """``b`` sends ``method`` on the early dialog its tagged 180 made."""
    assert inc.dialog is not None
    request = inc.dialog.new_request(
        method, via=f"SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bK{branch}", body=body,
        content_type="application/sdp" if body else None, extra=extra,
    )  # fmt: skip
    p.link.inject(request.encode(), p.B, p.A)


def test_bye_on_the_early_dialog_of_our_invite_is_answered_and_ends_the_attempt() -> None:
    # A UAS must not send BYE on an early dialog (section 15), but the dialog exists: the
    # BYE is answered 200 and ends the session (15.1.2), not 481. Our INVITE is then
    # CANCELled, so its transaction ends too and a 2xx that crossed is ACKed and BYEd.
    p = Pair()
    leg = p.call()
    inc = p.incoming()
    p.at_b(inc.ring)
    assert leg.state is LegState.RINGING and leg.dialog is not None
    _early_request(p, inc, "BYE", "early1", extra=(("Reason", "Q.850;cause=1"),))
    assert [(r.status, r.cseq.method) for r in answers(p, p.A)] == [(200, "BYE")]
    assert p.link.methods_sent(p.A) == ["INVITE", "200", "CANCEL", "ACK"]  # the 487's ACK
    assert leg.outcome is not None and not leg.outcome.answered
    assert (leg.outcome.cause, leg.outcome.ended_by) == (EndCause.REMOTE_HANGUP, Party.REMOTE)
    assert leg.outcome.q850_cause == 1  # the BYE's, not lost to the 487 that followed
    assert [e.leg for e in p.link.of_type(p.A, CallEnded)] == [leg]
    _early_request(p, inc, "BYE", "early2")  # the dialog is gone now
    assert [r.status for r in answers(p, p.A)] == [200, 481]
    p.link.advance(40.0)
    assert p.a.active_legs == 0 and not p.a.timers


def test_other_requests_on_the_early_dialog_of_our_invite_reach_the_leg() -> None:
    p = Pair()
    leg = p.call()
    inc = p.incoming()
    p.at_b(inc.ring)
    _early_request(p, inc, "INFO", "info1", extra=(("Content-Type", "text/plain"),))
    [received] = p.link.of_type(p.A, RequestReceived)
    assert received.leg is leg and received.request.method == "INFO"
    p.a.respond(received.transaction, 200, "OK", p.now)
    p.link.deliver()
    # Section 14.2: an INVITE on a dialog where our own INVITE is still pending gets 491.
    _early_request(p, inc, "INVITE", "reinv1", body=SDP_B)
    assert [(r.status, r.cseq.method) for r in answers(p, p.A)] == [(200, "INFO"), (491, "INVITE")]
    assert state_of(leg) is LegState.RINGING and p.link.of_type(p.A, ReinviteReceived) == []
    p.at_b(lambda now: inc.answer(SDP_B, now))
    assert state_of(leg) is LegState.ANSWERED
    p.at_b(inc.hangup)  # a BYE on the confirmed dialog that replaced the early one
    assert leg.outcome is not None and leg.outcome.answered
    assert leg.outcome.cause is EndCause.REMOTE_HANGUP


def test_a_2xx_from_another_fork_leaves_no_early_dialog_behind() -> None:
    p = Pair()
    leg = p.call()
    inc = p.incoming()
    p.at_b(inc.ring)  # an early dialog with b's tag
    [invite] = p.link.messages_sent(p.A, "INVITE")
    assert isinstance(invite, Request)
    fork = make_response(invite, 200, "OK", to_tag="fork2",
                         extra=(("contact", "<sip:fork@10.0.0.9>"),))  # fmt: skip
    p.link.inject(fork.encode(), X, p.A)
    assert leg.state is LegState.ANSWERED and leg.dialog is not None
    assert leg.dialog.remote_tag == "fork2"
    _early_request(p, inc, "BYE", "early1")  # b's early dialog ended with the 2xx
    assert [r.status for r in answers(p, p.A)] == [481]
    assert leg.outcome is None


@pytest.mark.parametrize("sender", ["caller", "callee"])
def test_cancel_of_a_pending_reinvite_gets_200_and_the_reinvite_487(sender: str) -> None:
    # Section 9.2: the CANCEL is answered 200, the re-INVITE it cancels 487, and the
    # session stays as it was.
    p = Pair()
    leg, inc = p.answered()
    asker: Leg
    asked: Leg
    if sender == "caller":
        src, dst, asking, answering, asker, asked = p.A, p.B, p.at_a, p.at_b, leg, inc
    else:
        src, dst, asking, answering, asker, asked = p.B, p.A, p.at_b, p.at_a, inc, leg
    asking(lambda now: asker.reinvite(SDP_A2, now))
    [pending] = p.link.of_type(dst, ReinviteReceived)
    assert pending.leg is asked
    sdps = (asked.local_sdp, asked.remote_sdp)
    reinvite = p.link.messages_sent(src, "INVITE")[-1]
    assert isinstance(reinvite, Request)
    p.link.inject(build_cancel(reinvite).encode(), src, dst)
    assert [(r.status, r.cseq.method) for r in answers(p, dst)][-2:] == [
        (200, "CANCEL"), (487, "INVITE"),
    ]  # fmt: skip
    [finished] = p.link.of_type(src, ReinviteFinished)
    assert finished.status == 487
    [abandoned] = p.link.of_type(dst, ReinviteAbandoned)
    assert abandoned.leg is asked and abandoned.request == pending.request
    with pytest.raises(LocalProtocolError):
        asked.accept_reinvite(SDP_A, p.now)
    assert asked.outcome is None and (asked.local_sdp, asked.remote_sdp) == sdps
    assert asked.state in (LegState.ANSWERED, LegState.CONFIRMED)
    # The session goes on: the next re-INVITE is answered, and the call hangs up cleanly.
    asking(lambda now: asker.reinvite(SDP_A2, now))
    answering(lambda now: asked.accept_reinvite(SDP_B2, now))
    assert [e.status for e in p.link.of_type(src, ReinviteFinished)] == [487, 200]
    p.at_a(leg.hangup)
    assert leg.outcome is not None and inc.outcome is not None
    p.link.advance(40.0)
    assert not p.a.timers and not p.b.timers


def test_transport_failure_towards_the_caller_ends_an_unanswered_incoming_call() -> None:
    # Sections 17.2.4 and 18.2.2: the responses to the INVITE cannot reach the caller any
    # more; the server transaction tells its leg, and the call is over.
    p = Pair("tcp")
    p.call()
    inc = p.incoming()
    p.at_b(inc.ring)
    p.b.transport_failed(Address("10.9.9.9", 5060, "tcp"), p.now)  # elsewhere: no effect
    assert inc.outcome is None
    p.b.transport_failed(p.A, p.now)
    p.link.deliver()
    assert inc.outcome is not None and not inc.outcome.answered
    assert (inc.outcome.cause, inc.outcome.ended_by) == (EndCause.TRANSPORT_ERROR, Party.REMOTE)
    assert [e.leg for e in p.link.of_type(p.B, CallEnded)] == [inc]
    with pytest.raises(LocalProtocolError):
        inc.answer(SDP_B, p.now)
    assert p.b.active_legs == 0


def test_transport_failure_before_the_ack_ends_an_answered_incoming_call() -> None:
    # Our 2xx cannot reach the caller (section 13.3.1.4 resends it end to end, through the
    # same broken transport): the call ends, and the 2xx is not resent any more.
    p = Pair("tcp")
    p.drop_first(1, lambda data, src, dst: data.startswith(b"ACK"))
    leg, inc = p.answered()
    assert inc.state is LegState.ANSWERED
    p.b.transport_failed(p.A, p.now)
    p.link.deliver()
    assert inc.outcome is not None
    assert (inc.outcome.cause, inc.outcome.ended_by) == (EndCause.TRANSPORT_ERROR, Party.REMOTE)
    sent = len(p.link.times_sent(p.B, "200"))
    p.link.advance(40.0)
    assert len(p.link.times_sent(p.B, "200")) == sent and not p.b.timers


def test_transport_failure_tells_the_layer_above_of_requests_it_has_not_answered() -> None:
    p = Pair("tcp")
    leg, inc = p.answered()
    for branch in ("answered", "pending"):
        p.link.inject(raw("OPTIONS", branch=f"z9hG4bK{branch}",
                          via="SIP/2.0/TCP 10.0.0.1:5060"), p.A, p.B)  # fmt: skip
    answered, pending = p.link.of_type(p.B, RequestReceived)
    p.b.respond(answered.transaction, 200, "OK", p.now)
    p.b.transport_failed(p.A, p.now)
    [abandoned] = [e for e in p.b.events() if isinstance(e, RequestAbandoned)]
    assert abandoned.transaction is pending.transaction
    assert inc.state is LegState.CONFIRMED  # a response that could not go does not end a call


# --- what a finished call leaves behind -----------------------------------------------------------


def _hang_up_the_caller(p: Pair) -> None:
    leg, _ = p.answered()
    p.at_a(leg.hangup)


def _hang_up_the_callee(p: Pair) -> None:
    _, inc = p.answered()
    p.at_b(inc.hangup)


def _busy(p: Pair) -> None:
    p.call()
    inc = p.incoming()
    p.at_b(lambda now: inc.reject(486, "Busy Here", now))


def _cancel_while_ringing(p: Pair) -> None:
    leg = p.call()
    p.at_b(p.incoming().ring)
    p.at_a(leg.cancel)


def _reinvite_then_hang_up(p: Pair) -> None:
    leg, inc = p.answered()
    p.at_a(lambda now: leg.reinvite(SDP_A, now))
    p.at_b(lambda now: inc.accept_reinvite(SDP_B, now))
    p.at_b(inc.hangup)


def _bye_on_the_early_dialog(p: Pair) -> None:
    p.call()
    inc = p.incoming()
    p.at_b(inc.ring)
    _early_request(p, inc, "BYE", "early1")


def _cancelled_reinvite_then_hang_up(p: Pair) -> None:
    leg, inc = p.answered()
    p.at_a(lambda now: leg.reinvite(SDP_A, now))
    reinvite = p.link.messages_sent(p.A, "INVITE")[-1]
    assert isinstance(reinvite, Request)
    p.link.inject(build_cancel(reinvite).encode(), p.A, p.B)
    p.at_b(inc.hangup)


def _ring_timeout(p: Pair) -> None:
    p.call(ring_timeout=5.0)
    p.at_b(p.incoming().ring)


@pytest.mark.parametrize(
    "scenario",
    [_hang_up_the_caller, _hang_up_the_callee, _busy, _cancel_while_ringing,
     _reinvite_then_hang_up, _ring_timeout, _bye_on_the_early_dialog,
     _cancelled_reinvite_then_hang_up],
)  # fmt: skip
def test_a_finished_call_leaves_no_cycles_for_the_collector(
    scenario: Callable[[Pair], None],
) -> None:
    # Legs, dialogs and transactions that only the cyclic collector can free outlive the
    # call: under load they pile up in its oldest generation, and a full pass over them
    # stalled the event loop for hundreds of ms. Reference counting alone must free them.
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        p = Pair()
        scenario(p)
        p.link.advance(40.0)  # past every timer: D, J, K, M and the ring timeout
        assert not p.a.timers and not p.b.timers
        assert p.link.of_type(p.A, CallEnded) and p.link.of_type(p.B, CallEnded)
        p.link.events.clear()  # the test's own record of events holds the legs
        gc.collect()
        left = Counter(
            type(o).__qualname__ for o in gc.garbage if type(o).__module__.startswith("voiceplane.")
        )
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert left == Counter()
