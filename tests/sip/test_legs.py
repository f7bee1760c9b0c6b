"""INVITE sessions (legs.py) between two endpoints on an in-memory link, time moved by hand."""

from __future__ import annotations

import functools
import sys

import pytest

from tests.sip.calls import SDP_A, SDP_A2, SDP_B, SDP_B2, Pair, state_of
from voiceplane.sip.digest import AuthorizationHeader, Credentials, challenge_header, verify
from voiceplane.sip.errors import LocalProtocolError
from voiceplane.sip.legs import (
    INCOMING,
    OUTGOING,
    CallAnswered,
    CallEnded,
    CallProgress,
    IncomingCall,
    LegState,
    ReinviteFinished,
    ReinviteReceived,
)
from voiceplane.sip.message import Request, Response, parse_message
from voiceplane.sip.outcome import EndCause, Party


def only_this_test_holds(obj: object) -> bool:
    """Nothing but the caller's variable refers to ``obj`` (so it goes as that does, cycles
    included). A reference count rather than a weakref: the compiled core's classes take
    none (voiceplane.native)."""
    return sys.getrefcount(obj) == 3  # the caller's variable, this argument, getrefcount's


def is_ack(data: bytes, src: object, dst: object) -> bool:
    return data.startswith(b"ACK ")


def test_call_answered_and_hung_up_by_the_caller() -> None:
    p = Pair()
    leg = p.call()
    inc = p.incoming()
    assert inc.remote_sdp == SDP_A and inc.state is LegState.RECEIVED
    assert inc.request_uri == "sip:123@10.0.0.2"
    p.link.advance(1.0)
    p.at_b(inc.ring)
    [progress] = p.link.of_type(p.A, CallProgress)
    assert (progress.status, progress.reason, progress.leg) == (180, "Ringing", leg)
    assert leg.state is LegState.RINGING and leg.ringing_at == 1.0
    p.link.advance(2.0)
    p.at_b(lambda now: inc.answer(SDP_B, now))
    [answered_a] = p.link.of_type(p.A, CallAnswered)
    [answered_b] = p.link.of_type(p.B, CallAnswered)  # on the ACK
    assert answered_a.sdp == SDP_B and answered_b.sdp == SDP_A
    assert state_of(leg) is LegState.ANSWERED and state_of(inc) is LegState.CONFIRMED
    assert leg.remote_sdp == SDP_B and inc.local_sdp == SDP_B
    assert p.link.methods_sent(p.A) == ["INVITE", "ACK"]
    assert p.link.methods_sent(p.B) == ["100", "180", "200"]
    assert p.a.active_legs == 1 and p.b.active_legs == 1
    p.link.advance(10.0)
    p.at_a(leg.hangup)
    assert p.link.methods_sent(p.A)[-1] == "BYE"
    assert leg.outcome is not None and inc.outcome is not None
    assert leg.outcome.cause is EndCause.LOCAL_HANGUP and leg.outcome.ended_by is Party.LOCAL
    assert inc.outcome.cause is EndCause.REMOTE_HANGUP and inc.outcome.ended_by is Party.REMOTE
    for outcome in (leg.outcome, inc.outcome):
        assert (outcome.status, outcome.reason) == (200, "OK")
        assert (outcome.created_at, outcome.ringing_at, outcome.answered_at, outcome.ended_at) == (
            0.0,
            1.0,
            3.0,
            13.0,
        )
        assert outcome.answered and outcome.q850_cause is None
    assert [e.outcome for e in p.link.of_type(p.A, CallEnded)] == [leg.outcome]
    assert [e.outcome for e in p.link.of_type(p.B, CallEnded)] == [inc.outcome]
    assert p.a.active_legs == 0 and p.b.active_legs == 0
    assert p.a.retransmissions == 0 and p.b.retransmissions == 0


def test_callee_hangs_up() -> None:
    p = Pair()
    leg, inc = p.answered()
    p.link.advance(5.0)
    p.at_b(inc.hangup)
    assert leg.outcome is not None and inc.outcome is not None
    assert (leg.outcome.cause, leg.outcome.ended_by) == (EndCause.REMOTE_HANGUP, Party.REMOTE)
    assert (inc.outcome.cause, inc.outcome.ended_by) == (EndCause.LOCAL_HANGUP, Party.LOCAL)
    assert inc.outcome.ended_at == leg.outcome.ended_at == 5.0
    assert p.link.methods_sent(p.B)[-1] == "BYE" and p.link.methods_sent(p.A)[-1] == "200"


def test_bye_goes_to_the_trunk_and_carries_the_dialog() -> None:
    p = Pair()
    leg, inc = p.answered()
    p.at_b(inc.hangup)
    [bye] = p.link.messages_sent(p.B, "BYE")
    [invite] = p.link.messages_sent(p.A, "INVITE")
    assert isinstance(bye, Request) and bye.call_id == invite.call_id
    assert bye.to.tag == invite.from_.tag and bye.from_.tag is not None
    assert bye.uri == "sip:voiceplane@10.0.0.1:5060"  # the caller's Contact
    assert bye.cseq.method == "BYE"


def test_incoming_hangup_before_the_ack_waits_for_it() -> None:
    p = Pair()
    leg = p.call()
    inc = p.incoming()
    inc.answer(SDP_B, p.now)
    inc.hangup(p.now)  # the 200 is not even on the wire yet
    assert inc.state is LegState.ANSWERED and inc.outcome is None
    p.b.drain(p.now)
    p.link.deliver()
    assert p.link.methods_sent(p.B) == ["200", "BYE"]
    assert p.link.methods_sent(p.A) == ["INVITE", "ACK", "200"]
    assert inc.outcome is not None and inc.outcome.cause is EndCause.LOCAL_HANGUP
    assert leg.outcome is not None and leg.outcome.cause is EndCause.REMOTE_HANGUP


def test_hangup_before_the_answer_is_a_cancel_and_cancel_after_it_a_bye() -> None:
    p = Pair()
    leg = p.call()
    inc = p.incoming()
    p.at_b(inc.ring)
    p.at_a(leg.hangup)
    assert leg.outcome is not None and leg.outcome.cause is EndCause.CANCELLED
    p2 = Pair()
    leg2, _ = p2.answered()
    p2.at_a(leg2.cancel)
    assert leg2.outcome is not None and leg2.outcome.cause is EndCause.LOCAL_HANGUP
    assert p2.link.methods_sent(p2.A)[-1] == "BYE"


def test_incoming_hangup_before_the_answer_rejects_with_480() -> None:
    p = Pair()
    leg = p.call()
    inc = p.incoming()
    p.at_b(inc.hangup)
    assert inc.outcome is not None and leg.outcome is not None
    assert (inc.outcome.cause, inc.outcome.status) == (EndCause.DECLINED, 480)
    assert (leg.outcome.cause, leg.outcome.status) == (EndCause.REJECTED, 480)


# --- our 2xx and its ACK ------------------------------------------------------------------------


def test_our_2xx_is_retransmitted_until_64_t1_then_ack_timeout_and_bye() -> None:
    p = Pair()
    p.link.drop = is_ack  # every ACK is lost
    leg, inc = p.answered()
    p.link.advance(40.0)
    sends = p.link.times_sent(p.B, "200")
    assert sends == [0.0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    gaps = [b - a for a, b in zip(sends, sends[1:], strict=False)]
    assert gaps == [0.5, 1, 2, 4, 4, 4, 4, 4, 4, 4]  # T1 doubling, capped at T2
    assert p.b.retransmissions == 10
    # the caller ACKed every copy (all lost)
    assert len(p.link.times_sent(p.A, "ACK")) == len(sends)
    assert p.link.times_sent(p.B, "BYE") == [32.0]
    assert inc.outcome is not None
    assert (inc.outcome.cause, inc.outcome.ended_by) == (EndCause.ACK_TIMEOUT, Party.REMOTE)
    assert (inc.outcome.status, inc.outcome.ended_at) == (200, 32.0)
    assert p.link.of_type(p.B, CallAnswered) == []
    assert leg.outcome is not None and leg.outcome.cause is EndCause.REMOTE_HANGUP


def test_ack_stops_the_2xx_retransmissions() -> None:
    p = Pair()
    leg, inc = p.answered()
    p.link.advance(2.0)
    p.link.advance(40.0)
    assert len(invite_200s(p)) == 1
    assert p.b.retransmissions == 0
    assert inc.state is LegState.CONFIRMED and inc.outcome is None


def test_lost_ack_the_caller_acks_the_retransmitted_2xx() -> None:
    p = Pair()
    lost = p.drop_first(1, is_ack)
    leg, inc = p.answered()
    assert len(lost) == 1 and inc.state is LegState.ANSWERED
    p.link.advance(40.0)
    assert p.link.times_sent(p.B, "200") == [0.0, 0.5]
    assert p.link.times_sent(p.A, "ACK") == [0.0, 0.5]
    assert state_of(inc) is LegState.CONFIRMED and leg.state is LegState.ANSWERED
    assert len(p.link.of_type(p.B, CallAnswered)) == 1
    assert len(p.link.of_type(p.A, CallAnswered)) == 1
    assert inc.outcome is None and leg.outcome is None


@pytest.mark.parametrize("fork", [False, True])
def test_a_2xx_again_after_the_caller_hung_up_is_acked_by_the_lingering_invite(
    fork: bool,
) -> None:
    # The leg lets go of its INVITE when it ends, so it does not live the 32 s of timer M;
    # the INVITE's transaction keeps the ACK and sends it again for a retransmitted 2xx
    # (its ACK was lost), but not for a 2xx of another fork (another To tag).
    p = Pair()
    leg, inc = p.answered()
    p.at_a(leg.hangup)
    assert leg.state is LegState.ENDED
    del inc
    p.link.events.clear()  # the test's own record of events holds the legs
    assert only_this_test_holds(leg)  # freed at once, while its INVITE still lingers
    del leg
    [ok] = [data for src, _, data in p.link.sent if src == p.B and data.startswith(b"SIP/2.0 200")
            and b" INVITE\r\n" in data]  # fmt: skip
    [ack] = [data for src, _, data in p.link.sent if src == p.A and data.startswith(b"ACK ")]
    if fork:
        tag = parse_message(ok).to_tag or ""
        ok = ok.replace(tag.encode(), b"another-fork")
    p.link.now = 1.0
    p.a.receive(ok, p.B, p.link.now)
    again = [data for data, _ in p.a.datagrams_to_send()]
    assert again == ([] if fork else [ack])


# --- CANCEL -------------------------------------------------------------------------------------


def test_ring_timeout_cancels_and_ends_with_487() -> None:
    p = Pair()
    leg = p.call(ring_timeout=5.0)
    inc = p.incoming()
    p.at_b(inc.ring)
    p.link.advance(10.0)
    assert p.link.times_sent(p.A, "CANCEL") == [5.0]
    assert p.link.methods_sent(p.A) == ["INVITE", "CANCEL", "ACK"]
    assert p.link.methods_sent(p.B) == ["180", "200", "487"]
    [cancel] = p.link.messages_sent(p.A, "CANCEL")
    [invite] = p.link.messages_sent(p.A, "INVITE")
    assert cancel.top_via.branch == invite.top_via.branch
    assert cancel.cseq.number == invite.cseq.number
    outcome = leg.outcome
    assert outcome is not None
    assert (outcome.cause, outcome.ended_by) == (EndCause.RING_TIMEOUT, Party.LOCAL)
    assert (outcome.status, outcome.reason) == (487, "Request Terminated")
    assert (outcome.ringing_at, outcome.answered_at, outcome.ended_at) == (0.0, None, 5.0)
    assert not outcome.answered
    assert inc.outcome is not None
    assert (inc.outcome.cause, inc.outcome.ended_by) == (EndCause.REMOTE_CANCEL, Party.REMOTE)
    assert inc.outcome.status == 487
    p.link.advance(40.0)  # the ACK for the 487 reached the callee: no retransmission
    assert p.link.methods_sent(p.B) == ["180", "200", "487"]


def test_cancel_waits_for_a_provisional_response() -> None:
    p = Pair()
    leg = p.call()
    p.link.advance(0.1)
    p.at_a(leg.cancel)  # nothing back yet: no CANCEL may go (section 9.1)
    assert leg.state is LegState.CANCELLING
    assert "CANCEL" not in p.link.methods_sent(p.A)
    p.link.advance(1.0)  # the callee's 100 Trying comes at 0.2 and releases it
    assert p.link.times_sent(p.B, "100") == [0.2]
    assert p.link.times_sent(p.A, "CANCEL") == [0.2]
    assert leg.outcome is not None
    assert (leg.outcome.cause, leg.outcome.status) == (EndCause.CANCELLED, 487)
    assert leg.outcome.ringing_at is None
    assert p.incoming().outcome is not None


def test_cancel_released_by_a_180() -> None:
    p = Pair()
    leg = p.call()
    inc = p.incoming()
    p.link.advance(0.1)
    p.at_a(leg.cancel)
    assert "CANCEL" not in p.link.methods_sent(p.A)
    p.at_b(inc.ring)  # before the 100 Trying would have gone
    assert p.link.methods_sent(p.A) == ["INVITE", "CANCEL", "ACK"]
    assert p.link.methods_sent(p.B) == ["180", "200", "487"]
    assert leg.outcome is not None and leg.outcome.cause is EndCause.CANCELLED


def test_no_cancel_ever_without_a_provisional() -> None:
    p = Pair()
    p.link.drop = lambda data, src, dst: src == p.B  # the callee is mute
    leg = p.call()
    p.at_a(leg.cancel)
    p.link.advance(40.0)
    assert "CANCEL" not in p.link.methods_sent(p.A)
    assert p.link.methods_sent(p.A).count("INVITE") == 7  # timer A ran until timer B
    assert leg.outcome is not None
    assert (leg.outcome.cause, leg.outcome.status) == (EndCause.CANCELLED, 408)
    assert leg.outcome.ended_at == 32.0


def test_cancel_without_any_final_response_gives_up_after_64_t1() -> None:
    # Section 9.1: if no final response arrives 64*T1 after the CANCEL, the original
    # transaction is considered cancelled and destroyed.
    p = Pair()
    p.link.drop = lambda data, src, dst: data.startswith(b"SIP/2.0 487")
    leg = p.call(ring_timeout=5.0)
    p.at_b(p.incoming().ring)
    p.link.advance(60.0)
    assert p.link.times_sent(p.A, "CANCEL") == [5.0]
    assert leg.outcome is not None
    assert (leg.outcome.cause, leg.outcome.ended_by) == (EndCause.RING_TIMEOUT, Party.LOCAL)
    assert leg.outcome.status == 408 and leg.outcome.ended_at == 37.0
    assert p.a.active_legs == 0


def test_200_crossing_our_cancel_is_acked_then_byed() -> None:
    p = Pair()
    leg = p.call()
    inc = p.incoming()
    p.at_b(inc.ring)
    p.link.advance(3.0)
    inc.answer(SDP_B, p.now)  # the 200 leaves the callee ...
    p.b.drain(p.now)
    leg.cancel(p.now)  # ... while our CANCEL leaves us
    p.a.drain(p.now)
    p.link.deliver()
    assert p.link.methods_sent(p.A) == [
        "INVITE",
        "CANCEL",
        "ACK",
        "BYE",
    ]
    assert "487" not in p.link.methods_sent(p.B)  # too late to stop the INVITE
    [cancel_ok] = [
        m
        for m in p.link.messages_sent(p.B, "200")
        if isinstance(m, Response) and m.cseq.method == "CANCEL"
    ]
    assert cancel_ok.status == 200  # the CANCEL itself is answered 200 (section 9.2)
    outcome = leg.outcome
    assert outcome is not None
    assert (outcome.cause, outcome.ended_by) == (EndCause.CANCELLED, Party.LOCAL)
    assert (outcome.status, outcome.reason) == (200, "OK")
    assert p.link.of_type(p.A, CallAnswered) == []
    assert inc.outcome is not None and inc.outcome.cause is EndCause.REMOTE_HANGUP


def test_200_crossing_the_ring_timeout_cancel_keeps_the_ring_timeout() -> None:
    p = Pair()
    leg = p.call(ring_timeout=5.0)
    inc = p.incoming()
    p.at_b(inc.ring)
    p.link.advance(4.9)
    inc.answer(SDP_B, p.now)
    p.b.drain(p.now)
    p.link.now = 5.0
    p.a.handle_timer(5.0)  # the ring timeout: CANCEL
    p.link.deliver()
    assert p.link.methods_sent(p.A) == ["INVITE", "CANCEL", "ACK", "BYE"]
    assert leg.outcome is not None
    assert (leg.outcome.cause, leg.outcome.status) == (EndCause.RING_TIMEOUT, 200)


def test_remote_cancel_of_an_incoming_invite() -> None:
    p = Pair()
    leg = p.call()
    inc = p.incoming()
    p.at_b(lambda now: inc.ring(now, status=183, reason="Session Progress", sdp=SDP_B))
    [progress] = p.link.of_type(p.A, CallProgress)
    assert (progress.status, progress.sdp) == (183, SDP_B) and leg.remote_sdp == SDP_B
    p.link.advance(2.0)
    p.at_a(leg.cancel)
    responses = [m for m in p.link.messages_sent(p.B) if isinstance(m, Response)]
    assert [(r.status, r.cseq.method) for r in responses] == [
        (183, "INVITE"),
        (200, "CANCEL"),
        (487, "INVITE"),
    ]
    assert inc.outcome is not None
    assert (inc.outcome.cause, inc.outcome.ended_by) == (EndCause.REMOTE_CANCEL, Party.REMOTE)
    assert (inc.outcome.status, inc.outcome.ended_at) == (487, 2.0)
    with pytest.raises(LocalProtocolError):
        inc.answer(SDP_B, p.now)  # too late


def test_remote_cancel_carries_its_q850_cause() -> None:
    p = Pair()
    leg = p.call()
    inc = p.incoming()
    p.at_b(inc.ring)
    [invite] = p.link.messages_sent(p.A, "INVITE")
    assert isinstance(invite, Request)
    cancel = Request(
        "CANCEL",
        invite.uri,
        invite.headers.set("cseq", f"{invite.cseq.number} CANCEL").add("reason", "Q.850;cause=31"),
    )
    p.link.inject(cancel.encode(), p.A, p.B)
    assert inc.outcome is not None and inc.outcome.q850_cause == 31
    assert leg.outcome is not None and leg.outcome.status == 487


# --- rejections and Reason ------------------------------------------------------------------------


def test_rejection_with_a_q850_reason() -> None:
    p = Pair()
    leg = p.call()
    inc = p.incoming()
    p.at_b(
        lambda now: inc.reject(
            486, "Busy Here", now, extra=(("Reason", 'Q.850;cause=17;text="User busy"'),)
        )
    )
    assert leg.outcome is not None
    assert (leg.outcome.cause, leg.outcome.ended_by) == (EndCause.REJECTED, Party.REMOTE)
    assert (leg.outcome.status, leg.outcome.reason, leg.outcome.q850_cause) == (
        486,
        "Busy Here",
        17,
    )
    assert inc.outcome is not None
    assert (inc.outcome.cause, inc.outcome.ended_by) == (EndCause.DECLINED, Party.LOCAL)
    assert inc.outcome.status == 486
    assert p.link.methods_sent(p.A) == ["INVITE", "ACK"]
    with pytest.raises(LocalProtocolError):
        inc.reject(200, "OK", p.now)


@pytest.mark.parametrize("towards", ["caller", "callee"])
def test_bye_with_a_q850_reason(towards: str) -> None:
    p = Pair()
    leg, inc = p.answered()
    sender, receiver = (inc, leg) if towards == "caller" else (leg, inc)
    src, dst = (p.B, p.A) if towards == "caller" else (p.A, p.B)
    assert sender.dialog is not None
    bye = sender.dialog.new_request(
        "BYE",
        via=f"SIP/2.0/UDP {src.host}:5060;branch=z9hG4bKrb",
        extra=(("Reason", "Q.850;cause=16, SIP;cause=200"),),
    )
    p.link.inject(bye.encode(), src, dst)
    assert receiver.outcome is not None
    assert receiver.outcome.cause is EndCause.REMOTE_HANGUP
    assert receiver.outcome.q850_cause == 16


def test_no_response_at_all_is_timer_b() -> None:
    p = Pair()
    p.link.drop = lambda data, src, dst: src == p.A
    leg = p.call(ring_timeout=60.0)
    p.link.advance(40.0)
    assert leg.outcome is not None
    assert (leg.outcome.cause, leg.outcome.ended_by) == (EndCause.NO_RESPONSE, Party.LOCAL)
    assert (leg.outcome.status, leg.outcome.reason) == (408, "Request Timeout")
    assert leg.outcome.ended_at == 32.0
    assert p.a.next_deadline() is None  # the ring timer went with the leg


# --- digest authentication --------------------------------------------------------------------

CHALLENGE = challenge_header(realm="trunk.example.com", nonce="nonce-1")


def challenge(p: Pair, status: int = 401, header: str = CHALLENGE) -> None:
    inc = p.incoming()
    name = "WWW-Authenticate" if status == 401 else "Proxy-Authenticate"
    reason = "Unauthorized" if status == 401 else "Proxy Authentication Required"
    p.at_b(lambda now: inc.reject(status, reason, now, extra=((name, header),)))


def test_401_is_answered_with_credentials() -> None:
    p = Pair()
    leg = p.call(credentials=Credentials("alice", "s3cret"))
    first_call = p.incoming()
    challenge(p)
    assert p.link.methods_sent(p.A) == ["INVITE", "ACK", "INVITE"]
    first, second = p.link.messages_sent(p.A, "INVITE")
    assert isinstance(first, Request) and isinstance(second, Request)
    assert second.cseq.number == first.cseq.number + 1
    assert second.top_via.branch != first.top_via.branch
    assert second.call_id == first.call_id and second.from_.tag == first.from_.tag
    assert second.body == SDP_A
    value = second.headers.get("authorization")
    assert value is not None
    auth = AuthorizationHeader.parse(value)
    assert (auth.username, auth.realm, auth.nonce, auth.uri) == (
        "alice",
        "trunk.example.com",
        "nonce-1",
        second.uri,
    )
    assert verify(auth, password="s3cret", method="INVITE")
    assert not verify(auth, password="wrong", method="INVITE")
    inc = p.incoming()
    assert inc is not first_call
    p.at_b(lambda now: inc.answer(SDP_B, now))
    assert leg.state is LegState.ANSWERED and leg.outcome is None
    assert leg.invite.cseq.number == second.cseq.number
    p.at_a(leg.hangup)
    [bye] = p.link.messages_sent(p.A, "BYE")
    assert bye.cseq.number > second.cseq.number


def test_407_is_answered_with_proxy_authorization() -> None:
    p = Pair()
    p.call(credentials=Credentials("alice", "s3cret"))
    challenge(p, 407)
    second = p.link.messages_sent(p.A, "INVITE")[-1]
    value = second.headers.get("proxy-authorization")
    assert value is not None and "authorization" not in second.headers
    assert verify(AuthorizationHeader.parse(value), password="s3cret", method="INVITE")


def test_a_second_challenge_fails_the_leg() -> None:
    p = Pair()
    leg = p.call(credentials=Credentials("alice", "wrong"))
    challenge(p)
    challenge(p, header=challenge_header(realm="trunk.example.com", nonce="nonce-2"))
    assert p.link.methods_sent(p.A) == ["INVITE", "ACK", "INVITE", "ACK"]
    assert leg.outcome is not None
    assert (leg.outcome.cause, leg.outcome.ended_by) == (EndCause.REJECTED, Party.REMOTE)
    assert (leg.outcome.status, leg.outcome.reason) == (401, "Unauthorized")


def test_a_stale_nonce_is_retried_once_more() -> None:
    p = Pair()
    leg = p.call(credentials=Credentials("alice", "s3cret"))
    challenge(p)
    challenge(p, header=challenge_header(realm="trunk.example.com", nonce="n2", stale=True))
    assert p.link.methods_sent(p.A).count("INVITE") == 3
    challenge(p, header=challenge_header(realm="trunk.example.com", nonce="n3", stale=True))
    assert p.link.methods_sent(p.A).count("INVITE") == 3
    assert leg.outcome is not None and leg.outcome.status == 401


def test_401_without_credentials_is_a_rejection() -> None:
    p = Pair()
    leg = p.call()
    challenge(p)
    assert leg.outcome is not None
    assert (leg.outcome.cause, leg.outcome.status) == (EndCause.REJECTED, 401)


def test_cancel_after_a_challenge_waits_for_a_provisional_to_the_new_invite() -> None:
    p = Pair()
    leg = p.call(credentials=Credentials("alice", "s3cret"))
    p.link.advance(0.3)  # 100 Trying to the first INVITE at 0.2
    challenge(p)  # at 0.3: the INVITE goes again with credentials
    p.link.advance(0.05)
    p.at_a(leg.cancel)  # at 0.35, nothing back yet for the new INVITE
    assert "CANCEL" not in p.link.methods_sent(p.A)
    p.link.advance(1.0)  # its 100 Trying at 0.5 releases the CANCEL
    assert p.link.times_sent(p.A, "CANCEL") == [0.5]
    [cancel] = p.link.messages_sent(p.A, "CANCEL")
    assert cancel.cseq.number == leg.invite.cseq.number
    assert leg.outcome is not None
    assert (leg.outcome.cause, leg.outcome.status) == (EndCause.CANCELLED, 487)


# --- re-INVITE -----------------------------------------------------------------------------------


def invite_200s(p: Pair) -> list[int]:
    """The CSeq numbers of every 200 to an INVITE the callee sent."""
    return [m.cseq.number for m in p.link.messages_sent(p.B, "200") if m.cseq.method == "INVITE"]


def test_reinvite_from_the_caller() -> None:
    p = Pair()
    leg, inc = p.answered()
    p.link.advance(1.0)
    p.at_a(lambda now: leg.reinvite(SDP_A2, now))
    [received] = p.link.of_type(p.B, ReinviteReceived)
    assert received.leg is inc and received.request.body == SDP_A2
    assert received.request.headers.get("content-type") == "application/sdp"
    p.at_b(lambda now: inc.accept_reinvite(SDP_B2, now))
    [finished] = p.link.of_type(p.A, ReinviteFinished)
    assert (finished.leg, finished.status, finished.sdp) == (leg, 200, SDP_B2)
    assert (leg.local_sdp, leg.remote_sdp) == (SDP_A2, SDP_B2)
    assert (inc.local_sdp, inc.remote_sdp) == (SDP_B2, SDP_A2)
    assert p.link.methods_sent(p.A) == ["INVITE", "ACK", "INVITE", "ACK"]
    p.link.advance(40.0)
    assert len(invite_200s(p)) == 2  # the re-INVITE's 200 was ACKed: not resent
    assert leg.state is LegState.ANSWERED and inc.state is LegState.CONFIRMED
    assert leg.outcome is None and inc.outcome is None


def test_reinvite_from_the_callee() -> None:
    p = Pair()
    leg, inc = p.answered()
    p.at_b(lambda now: inc.reinvite(SDP_B2, now))
    [received] = p.link.of_type(p.A, ReinviteReceived)
    assert received.leg is leg and received.request.body == SDP_B2
    p.at_a(lambda now: leg.accept_reinvite(SDP_A2, now))
    [finished] = p.link.of_type(p.B, ReinviteFinished)
    assert (finished.status, finished.sdp) == (200, SDP_A2)
    assert p.link.methods_sent(p.B)[-2:] == ["INVITE", "ACK"]
    p.link.advance(40.0)
    assert p.a.retransmissions == 0 and p.b.retransmissions == 0
    assert leg.outcome is None and inc.outcome is None


def test_reinvite_rejected() -> None:
    p = Pair()
    leg, inc = p.answered()
    p.at_a(lambda now: leg.reinvite(SDP_A2, now))
    p.at_b(lambda now: inc.reject_reinvite(488, "Not Acceptable Here", now))
    [finished] = p.link.of_type(p.A, ReinviteFinished)
    assert (finished.status, finished.sdp) == (488, b"")
    assert p.link.methods_sent(p.A)[-1] == "ACK"  # the transaction's ACK of the 488
    assert leg.local_sdp == SDP_A2 and leg.remote_sdp == SDP_B  # the old answer stands
    p.link.advance(40.0)
    assert leg.state is LegState.ANSWERED and inc.state is LegState.CONFIRMED
    assert p.b.retransmissions == 0


def test_lost_ack_of_a_reinvite_2xx_is_sent_again() -> None:
    p = Pair()
    leg, inc = p.answered()
    p.at_a(lambda now: leg.reinvite(SDP_A2, now))
    p.drop_first(1, is_ack)
    p.at_b(lambda now: inc.accept_reinvite(SDP_B2, now))
    p.link.advance(40.0)
    reinvite_cseq = leg.dialog.local_seq if leg.dialog else 0
    assert invite_200s(p).count(reinvite_cseq) == 2  # resent once, then ACKed
    assert p.link.methods_sent(p.A).count("ACK") == 3


def test_a_call_that_reinvited_goes_when_it_ends() -> None:
    # The finished re-INVITE lingers 32 s (timer M) without its leg: a 2xx of it again
    # still gets the same ACK, from the transaction.
    p = Pair()
    leg, inc = p.answered()
    p.at_a(functools.partial(leg.reinvite, SDP_A2))
    p.at_b(functools.partial(inc.accept_reinvite, SDP_B2))
    p.at_a(leg.hangup)
    reinvite_cseq = leg.dialog.local_seq - 1 if leg.dialog else 0
    del inc
    p.link.events.clear()
    assert only_this_test_holds(leg)
    del leg
    [ok] = [data for src, _, data in p.link.sent if src == p.B and data.startswith(b"SIP/2.0 200")
            and f"CSeq: {reinvite_cseq} INVITE".encode() in data]  # fmt: skip
    acks = [data for src, _, data in p.link.sent if src == p.A and data.startswith(b"ACK ")]
    p.a.receive(ok, p.B, p.now)
    assert [data for data, _ in p.a.datagrams_to_send()] == [acks[-1]]


def test_a_second_reinvite_while_one_is_pending_gets_491() -> None:
    p = Pair()
    leg, inc = p.answered()
    p.at_a(lambda now: leg.reinvite(SDP_A2, now))
    with pytest.raises(LocalProtocolError):
        leg.reinvite(SDP_A2, p.now)
    with pytest.raises(LocalProtocolError):
        inc.reinvite(SDP_B2, p.now)  # one is waiting for our answer
    assert leg.dialog is not None
    again = leg.dialog.new_request(
        "INVITE",
        via="SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKglare",
        body=SDP_A2,
        content_type="application/sdp",
    )
    p.link.inject(again.encode(), p.A, p.B)
    assert p.link.methods_sent(p.B)[-1] == "491"
    assert len(p.link.of_type(p.B, ReinviteReceived)) == 1


def test_reinvite_before_the_answer_is_refused() -> None:
    p = Pair()
    leg = p.call()
    inc = p.incoming()
    with pytest.raises(LocalProtocolError):
        leg.reinvite(SDP_A2, p.now)
    with pytest.raises(LocalProtocolError):
        inc.accept_reinvite(SDP_B2, p.now)
    with pytest.raises(LocalProtocolError):
        inc.reject_reinvite(488, "No", p.now)


# --- early dialogs and illegal moves ----------------------------------------------------------


def test_bye_on_an_early_dialog_ends_the_incoming_call_with_487() -> None:
    p = Pair()
    leg = p.call()
    inc = p.incoming()
    p.at_b(inc.ring)
    assert leg.dialog is not None  # the early dialog from the tagged 180
    bye = leg.dialog.new_request("BYE", via="SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKearly")
    p.link.inject(bye.encode(), p.A, p.B)
    responses = [
        (m.status, m.cseq.method) for m in p.link.messages_sent(p.B) if isinstance(m, Response)
    ]
    assert responses[-2:] == [(200, "BYE"), (487, "INVITE")]
    assert inc.outcome is not None
    assert (inc.outcome.cause, inc.outcome.status) == (EndCause.REMOTE_HANGUP, 487)


def test_illegal_local_moves_raise() -> None:
    p = Pair()
    leg, inc = p.answered()
    with pytest.raises(LocalProtocolError):
        inc.answer(SDP_B, p.now)
    with pytest.raises(LocalProtocolError):
        inc.ring(p.now)
    with pytest.raises(LocalProtocolError):
        inc.reject(486, "Busy", p.now)
    p.at_a(leg.hangup)
    leg.hangup(p.now)  # ending twice is harmless
    leg.cancel(p.now)
    inc.hangup(p.now)
    assert p.link.methods_sent(p.A).count("BYE") == 1


def test_nothing_leaves_ended() -> None:
    for table in (OUTGOING, INCOMING):
        assert not any(state is LegState.ENDED for state, _ in table)


def test_incoming_call_event_carries_the_leg() -> None:
    p = Pair()
    p.call()
    [event] = p.link.of_type(p.B, IncomingCall)
    assert event.leg.call_id == p.link.messages_sent(p.A, "INVITE")[0].call_id


# --- over TCP ------------------------------------------------------------------------------------


def test_a_whole_call_over_tcp() -> None:
    p = Pair("tcp")
    leg, inc = p.answered()
    [invite] = p.link.messages_sent(p.A, "INVITE")
    assert invite.top_via.transport == "TCP"
    assert invite.headers.get("contact") == "<sip:voiceplane@10.0.0.1:5060;transport=tcp>"
    p.link.advance(5.0)
    p.at_b(inc.hangup)  # the BYE goes back over the caller's connection
    assert all(dst.transport == "tcp" for _, dst, _ in p.link.sent)
    assert leg.outcome is not None and leg.outcome.cause is EndCause.REMOTE_HANGUP
    p.link.advance(60.0)
    assert p.a.retransmissions == 0 and p.b.retransmissions == 0
    assert p.a.next_deadline() is None and p.b.next_deadline() is None


def test_a_challenge_from_a_realm_we_hold_no_password_for_is_a_rejection() -> None:
    p = Pair()
    leg = p.call(credentials=Credentials("alice", "s3cret", realm="other.example.com"))
    challenge(p)
    assert p.link.methods_sent(p.A) == ["INVITE", "ACK"]
    assert leg.outcome is not None
    assert (leg.outcome.cause, leg.outcome.status) == (EndCause.REJECTED, 401)
