"""The four transaction machines (transaction.py), driven directly with an Outbox and a
TimerQueue on a hand-moved clock, and a few checks through whole endpoints."""

from __future__ import annotations

from typing import Any

import pytest

from tests.sip.link import Link
from voiceplane.sip.addressing import Address
from voiceplane.sip.endpoint import RequestFinished, RequestReceived, SipEndpoint
from voiceplane.sip.errors import LocalProtocolError
from voiceplane.sip.message import Headers, Request, Response, parse_message
from voiceplane.sip.timers import TimerQueue, TimerValues
from voiceplane.sip.transaction import (
    CLIENT_INVITE,
    CLIENT_NON_INVITE,
    SERVER_INVITE,
    SERVER_NON_INVITE,
    ClientInviteTransaction,
    ClientNonInviteTransaction,
    ClientTransaction,
    Outbox,
    ResponseReceived,
    ServerInviteTransaction,
    ServerNonInviteTransaction,
    ServerTransaction,
    TransactionEvent,
    TransactionTimedOut,
    TransactionTransportFailed,
    TxState,
    build_cancel,
    build_non2xx_ack,
    make_response,
    server_key,
)

UDP_PEER = Address("10.0.0.2", 5060)
TCP_PEER = Address("10.0.0.2", 5060, "tcp")


def make_request(
    method: str = "INVITE", *, branch: str = "z9hG4bKtx1", cseq: int = 1, transport: str = "UDP"
) -> Request:
    return Request(
        method,
        "sip:bob@10.0.0.2",
        Headers(
            [
                ("Via", f"SIP/2.0/{transport} 10.0.0.1:5060;branch={branch};rport"),
                ("Via", "SIP/2.0/UDP 10.9.9.9:5060;branch=z9hG4bKupstream"),
                ("Max-Forwards", "70"),
                ("From", "Alice <sip:alice@10.0.0.1>;tag=a1"),
                ("To", "Bob <sip:bob@10.0.0.2>"),
                ("Call-ID", "call-1@10.0.0.1"),
                ("CSeq", f"{cseq} {method}"),
                ("Route", "<sip:proxy.example.com;lr>"),
                ("Record-Route", "<sip:rr.example.com;lr>"),
                ("Contact", "<sip:alice@10.0.0.1>"),
            ]
        ),
        b"v=0\r\n" if method == "INVITE" else b"",
    )


def state_of(tx: ClientTransaction | ServerTransaction) -> TxState:
    """``tx.state`` read afresh: mypy keeps an earlier assert's narrowing of ``tx.state``
    across the calls that move the transaction on, and would take a later assert as dead."""
    return tx.state


class Harness:
    """One Outbox and TimerQueue; a clock moved by hand; everything sent logged with its time."""

    def __init__(self, values: TimerValues | None = None) -> None:
        self.values = values or TimerValues()
        self.outbox = Outbox()
        self.timers = TimerQueue()
        self.now = 0.0
        self.sent: list[tuple[float, str, Address]] = []  # (time, first line, destination)
        self.raw: list[bytes] = []
        self.terminated: list[object] = []

    def make(self, cls: Any, request: Request, peer: Address = UDP_PEER) -> Any:
        return cls(
            request,
            peer,
            outbox=self.outbox,
            timers=self.timers,
            values=self.values,
            on_terminated=self.terminated.append,
        )

    def collect(self) -> None:
        for data, dest in self.outbox.datagrams:
            self.sent.append((self.now, data.split(b"\r\n", 1)[0].decode(), dest))
            self.raw.append(data)
        self.outbox.datagrams = []

    def run_until(self, t: float) -> None:
        self.collect()
        while (due := self.timers.next_deadline()) is not None and due <= t:
            self.now = due
            self.timers.fire_due(due)
            self.collect()
        self.now = t

    def call(self, t: float, action: Any, *args: Any) -> None:
        """Move the clock to ``t``, then ``action(*args, t)``, logging what it sends at ``t``."""
        self.run_until(t)
        action(*args, t)
        self.collect()

    def times(self, first_line_start: str) -> list[float]:
        self.collect()
        return [t for t, line, _ in self.sent if line.startswith(first_line_start)]

    def events(self) -> list[TransactionEvent]:
        out = self.outbox.tx_events
        self.outbox.tx_events = []
        return out


def response(request: Request, status: int, reason: str = "X", tag: str | None = "b1") -> Response:
    return make_response(request, status, reason, to_tag=tag if status > 100 else None)


# --- client INVITE -------------------------------------------------------------------------


def test_timer_a_doubles_and_timer_b_ends_at_64_t1() -> None:
    h = Harness()
    tx = h.make(ClientInviteTransaction, make_request())
    h.call(0.0, tx.start)
    assert tx.state is TxState.CALLING
    h.run_until(40.0)
    sends = h.times("INVITE")
    assert sends == [0.0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert [b - a for a, b in zip(sends, sends[1:], strict=False)] == [0.5, 1, 2, 4, 8, 16]
    assert h.outbox.retransmissions == 6
    events = h.events()
    assert len(events) == 1 and isinstance(events[0], TransactionTimedOut)
    assert events[0].transaction is tx
    assert state_of(tx) is TxState.TERMINATED and h.terminated == [tx]
    assert h.timers.next_deadline() is None


def test_timer_b_fires_at_32_seconds_exactly() -> None:
    h = Harness()
    tx = h.make(ClientInviteTransaction, make_request())
    h.call(0.0, tx.start)
    h.run_until(31.99)
    assert h.events() == [] and tx.state is TxState.CALLING
    h.run_until(32.0)
    assert [type(e) for e in h.events()] == [TransactionTimedOut]


def test_provisional_stops_timer_a_and_timer_b() -> None:
    h = Harness()
    request = make_request()
    tx = h.make(ClientInviteTransaction, request)
    h.call(0.0, tx.start)
    h.run_until(0.6)  # one retransmission at 0.5
    ringing = response(request, 180, "Ringing")
    h.call(0.6, tx.receive, ringing)
    assert tx.state is TxState.PROCEEDING
    events = h.events()
    assert len(events) == 1 and isinstance(events[0], ResponseReceived)
    assert events[0].response is ringing and tx.last_response is ringing
    h.run_until(300.0)
    assert h.times("INVITE") == [0.0, 0.5]
    assert h.events() == [] and tx.state is TxState.PROCEEDING
    h.call(301.0, tx.receive, ringing)  # a repeated provisional still goes up
    assert len(h.events()) == 1


def test_non_2xx_final_is_acked_and_timer_d_absorbs_retransmissions() -> None:
    h = Harness()
    request = make_request()
    tx = h.make(ClientInviteTransaction, request)
    h.call(0.0, tx.start)
    h.call(0.1, tx.receive, response(request, 100, "Trying"))
    busy = response(request, 486, "Busy Here")
    h.run_until(1.0)
    h.call(1.0, tx.receive, busy)
    assert tx.state is TxState.COMPLETED
    events = h.events()
    assert [type(e) for e in events] == [ResponseReceived, ResponseReceived]
    last = events[-1]
    assert isinstance(last, ResponseReceived) and last.response is busy
    assert tx.last_response is None  # gone up to the TU; not held for the 32 s of timer D
    assert h.times("ACK") == [1.0]
    # the retransmitted final during timer D is ACKed again, and not passed up
    h.run_until(20.0)
    h.call(20.0, tx.receive, busy)
    assert h.times("ACK") == [1.0, 20.0]
    assert h.events() == []
    h.run_until(32.99)
    assert tx.state is TxState.COMPLETED
    h.run_until(33.0)  # D = 32 s after the final
    assert state_of(tx) is TxState.TERMINATED and h.terminated == [tx]
    h.call(40.0, tx.receive, busy)  # after D the transaction is gone: nothing happens
    assert h.times("ACK") == [1.0, 20.0] and h.events() == []


def test_ack_for_non_2xx_is_built_per_section_17_1_1_3() -> None:
    request = make_request()
    busy = response(request, 486, "Busy Here", tag="remote-tag")
    ack = build_non2xx_ack(request, busy)
    assert (ack.method, ack.uri) == ("ACK", request.uri)
    assert ack.headers.get_all("via") == [request.headers.get("via")]  # the top Via only
    assert ack.top_via.branch == "z9hG4bKtx1"
    assert ack.to.tag == "remote-tag"
    assert ack.from_.tag == "a1" and ack.call_id == request.call_id
    assert (ack.cseq.number, ack.cseq.method) == (1, "ACK")
    assert ack.headers.get_all("route") == ["<sip:proxy.example.com;lr>"]
    assert ack.body == b""
    assert parse_message(ack.encode()) == parse_message(ack.encode())


def test_2xx_goes_up_every_time_and_timer_m_ends_the_transaction() -> None:
    h = Harness()
    request = make_request()
    tx = h.make(ClientInviteTransaction, request)
    tx.owner = h  # a TU that stays: every 2xx goes up to it
    h.call(0.0, tx.start)
    ok = response(request, 200, "OK")
    h.call(2.0, tx.receive, ok)
    assert tx.state is TxState.ACCEPTED
    assert tx.last_response is None  # not held for the 32 s of timer M
    with pytest.raises(LocalProtocolError, match="let go of its request"):
        tx.request  # nor the request: what the TU needs for its ACK is kept  # noqa: B018
    assert (tx.method, tx.cseq_number, tx.branch) == ("INVITE", 1, request.top_via.branch)
    h.call(2.5, tx.receive, ok)  # retransmitted 2xx: the TU must ACK it again
    h.call(2.6, tx.receive, response(request, 486))  # a non-2xx after a 2xx is dropped
    assert [type(e) for e in h.events()] == [ResponseReceived, ResponseReceived]
    assert h.times("ACK") == []  # the ACK of a 2xx is the TU's job
    h.run_until(33.99)
    assert tx.state is TxState.ACCEPTED
    h.run_until(34.0)  # M = 64*T1 after the first 2xx
    assert state_of(tx) is TxState.TERMINATED
    assert h.times("INVITE") == [0.0, 0.5, 1.5]


def test_once_the_tu_let_go_a_2xx_again_gets_the_ack_the_tu_sent() -> None:
    h = Harness()
    request = make_request()
    tx = h.make(ClientInviteTransaction, request)
    tx.owner = h
    h.call(0.0, tx.start)
    ok = response(request, 200, "OK", tag="b1")
    h.call(1.0, tx.receive, ok)
    ack = b"ACK sip:b@10.0.0.2 SIP/2.0\r\n(the TU's)\r\n\r\n"
    tx.send_2xx_ack(ack, UDP_PEER, "b1")
    tx.owner = None  # the leg ended and let go of it
    h.call(1.5, tx.receive, ok)  # the ACK was lost: the same ACK again
    h.call(1.6, tx.receive, response(request, 200, "OK", tag="fork2"))  # not ours
    assert [type(e) for e in h.events()] == [ResponseReceived]  # only the first went up
    assert h.times("ACK") == [1.0, 1.5]
    assert h.outbox.retransmissions == 2  # timer A's INVITE at 0.5 s, and that ACK


def test_client_invite_over_tcp_never_retransmits_and_ends_at_once() -> None:
    h = Harness()
    request = make_request(transport="TCP")
    tx = h.make(ClientInviteTransaction, request, TCP_PEER)
    h.call(0.0, tx.start)
    assert len(h.timers) == 1  # timer B only
    h.run_until(31.0)
    assert h.times("INVITE") == [0.0]
    h.call(31.0, tx.receive, response(request, 486, "Busy Here"))
    assert h.times("ACK") == [31.0]
    assert tx.state is TxState.TERMINATED  # timer D is zero on a reliable transport
    assert len(h.timers) == 0


def test_client_invite_over_tcp_times_out_with_timer_b() -> None:
    h = Harness()
    tx = h.make(ClientInviteTransaction, make_request(transport="TCP"), TCP_PEER)
    h.call(0.0, tx.start)
    h.run_until(32.0)
    assert h.times("INVITE") == [0.0]
    assert [type(e) for e in h.events()] == [TransactionTimedOut]


def test_transport_error_ends_a_calling_transaction() -> None:
    h = Harness()
    tx = h.make(ClientInviteTransaction, make_request())
    h.call(0.0, tx.start)
    h.call(0.1, tx.transport_failed)
    assert [type(e) for e in h.events()] == [TransactionTransportFailed]
    assert tx.state is TxState.TERMINATED and len(h.timers) == 0
    h.call(0.2, tx.transport_failed)  # no second event
    assert h.events() == []


# --- client non-INVITE --------------------------------------------------------------------------


def test_timer_e_doubles_up_to_t2_and_timer_f_ends_it() -> None:
    h = Harness()
    tx = h.make(ClientNonInviteTransaction, make_request("OPTIONS"))
    h.call(0.0, tx.start)
    assert tx.state is TxState.TRYING
    h.run_until(40.0)
    sends = h.times("OPTIONS")
    assert sends == [0.0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    gaps = [b - a for a, b in zip(sends, sends[1:], strict=False)]
    assert gaps == [0.5, 1, 2, 4, 4, 4, 4, 4, 4, 4]
    assert [type(e) for e in h.events()] == [TransactionTimedOut]
    assert state_of(tx) is TxState.TERMINATED


def test_timer_f_is_64_t1_and_timer_e_caps_at_a_custom_t2() -> None:
    h = Harness(TimerValues(t1=0.25, t2=1.0))
    tx = h.make(ClientNonInviteTransaction, make_request("OPTIONS"))
    h.call(0.0, tx.start)
    h.run_until(16.0)
    sends = h.times("OPTIONS")
    assert sends[:5] == [0.0, 0.25, 0.75, 1.75, 2.75]
    assert [type(e) for e in h.events()] == [TransactionTimedOut]  # F = 64 * 0.25 = 16 s


@pytest.mark.parametrize("provisional_at", [0.2, 2.0])
def test_timer_e_fires_every_t2_once_proceeding(provisional_at: float) -> None:
    h = Harness()
    request = make_request("OPTIONS")
    tx = h.make(ClientNonInviteTransaction, request)
    h.call(0.0, tx.start)
    h.run_until(provisional_at)
    h.call(provisional_at, tx.receive, response(request, 100, "Trying"))
    assert tx.state is TxState.PROCEEDING
    h.run_until(40.0)
    after = [t for t in h.times("OPTIONS") if t > provisional_at]
    assert after and after[0] - provisional_at <= h.values.t2 + 1e-9
    assert all(b - a == pytest.approx(h.values.t2) for a, b in zip(after, after[1:], strict=False))
    assert len(after) >= 6
    # timer F still runs in Proceeding: no final in 64*T1 is a timeout
    assert [type(e) for e in h.events()] == [ResponseReceived, TransactionTimedOut]


def test_non_invite_final_then_timer_k() -> None:
    h = Harness()
    request = make_request("OPTIONS")
    tx = h.make(ClientNonInviteTransaction, request)
    h.call(0.0, tx.start)
    h.run_until(1.0)
    ok = response(request, 200, "OK")
    h.call(1.0, tx.receive, ok)
    assert tx.state is TxState.COMPLETED and tx.last_response is None  # not held for timer K
    h.call(2.0, tx.receive, ok)  # retransmitted final absorbed
    events = h.events()
    assert [type(e) for e in events] == [ResponseReceived]
    assert isinstance(events[0], ResponseReceived) and events[0].response is ok
    h.run_until(5.99)
    assert tx.state is TxState.COMPLETED
    h.run_until(6.0)  # K = T4
    assert state_of(tx) is TxState.TERMINATED and h.terminated == [tx]
    assert h.times("OPTIONS") == [0.0, 0.5]  # no retransmission after the final


def test_client_non_invite_over_tcp() -> None:
    h = Harness()
    request = make_request("OPTIONS", transport="TCP")
    tx = h.make(ClientNonInviteTransaction, request, TCP_PEER)
    h.call(0.0, tx.start)
    assert len(h.timers) == 1  # timer F only
    h.call(1.0, tx.receive, response(request, 100, "Trying"))
    h.run_until(10.0)
    assert h.times("OPTIONS") == [0.0]
    h.call(10.0, tx.receive, response(request, 404, "Not Found"))
    assert tx.state is TxState.TERMINATED  # K is zero on a reliable transport
    assert len(h.timers) == 0


# --- server INVITE ----------------------------------------------------------------------------


def test_100_trying_after_200_ms_when_the_tu_is_silent() -> None:
    h = Harness()
    tx = h.make(ServerInviteTransaction, make_request())
    h.call(0.0, tx.start)
    assert tx.state is TxState.PROCEEDING
    h.run_until(0.19)
    assert h.times("SIP/2.0") == []
    h.run_until(1.0)
    assert h.times("SIP/2.0 100") == [0.2]
    trying = parse_message(h.raw[0])
    assert isinstance(trying, Response) and trying.to.tag is None  # no tag on a 100
    assert trying.headers.get_all("via") == tx.request.headers.get_all("via")
    assert h.sent[0][2] == UDP_PEER
    h.call(1.0, tx.receive_retransmission)  # the retransmitted INVITE gets the 100 again
    assert h.times("SIP/2.0 100") == [0.2, 1.0]


@pytest.mark.parametrize("status", [180, 200, 486])
def test_no_100_trying_when_the_tu_answers_sooner(status: int) -> None:
    h = Harness()
    request = make_request()
    tx = h.make(ServerInviteTransaction, request)
    h.call(0.0, tx.start)
    h.run_until(0.1)
    h.call(0.1, tx.respond, response(request, status))
    h.run_until(0.5)
    assert h.times("SIP/2.0 100") == []
    assert h.times(f"SIP/2.0 {status}")[0] == 0.1


def test_retransmitted_invite_gets_the_last_provisional_again() -> None:
    h = Harness()
    request = make_request()
    tx = h.make(ServerInviteTransaction, request)
    h.call(0.0, tx.start)
    h.call(0.05, tx.receive_retransmission)  # nothing to resend yet: absorbed
    assert h.times("SIP/2.0") == []
    h.call(0.1, tx.respond, response(request, 180, "Ringing"))
    h.call(0.15, tx.respond, response(request, 183, "Session Progress"))
    h.call(1.0, tx.receive_retransmission)
    h.call(2.0, tx.receive_retransmission)
    assert h.times("SIP/2.0 180") == [0.1]
    assert h.times("SIP/2.0 183") == [0.15, 1.0, 2.0]
    assert h.outbox.retransmissions == 2


def test_timer_g_retransmits_the_final_until_the_ack_then_timer_i() -> None:
    h = Harness()
    request = make_request()
    tx = h.make(ServerInviteTransaction, request)
    h.call(0.0, tx.start)
    h.call(0.0, tx.respond, response(request, 486, "Busy Here"))
    assert tx.state is TxState.COMPLETED
    h.run_until(9.0)
    assert h.times("SIP/2.0 486") == [0.0, 0.5, 1.5, 3.5, 7.5]  # T1 doubling, capped at T2
    h.call(9.0, tx.receive_retransmission)  # retransmitted INVITE: the final again
    assert h.times("SIP/2.0 486")[-1] == 9.0
    h.call(9.5, tx.receive_ack)
    assert state_of(tx) is TxState.CONFIRMED
    h.call(10.0, tx.receive_ack)  # duplicates absorbed in Confirmed
    h.call(10.0, tx.receive_retransmission)
    h.run_until(14.49)
    assert len(h.times("SIP/2.0 486")) == 6
    assert state_of(tx) is TxState.CONFIRMED
    h.run_until(14.5)  # I = T4 after the ACK
    assert state_of(tx) is TxState.TERMINATED and h.terminated == [tx]
    assert h.events() == []


def test_timer_g_caps_at_t2_and_timer_h_gives_up_without_ack() -> None:
    h = Harness()
    request = make_request()
    tx = h.make(ServerInviteTransaction, request)
    h.call(0.0, tx.start)
    h.run_until(1.0)
    h.call(1.0, tx.respond, response(request, 603, "Decline"))
    h.run_until(40.0)
    sends = h.times("SIP/2.0 603")
    assert sends == [1.0, 1.5, 2.5, 4.5, 8.5, 12.5, 16.5, 20.5, 24.5, 28.5, 32.5]
    events = h.events()
    assert len(events) == 1 and isinstance(events[0], TransactionTimedOut)
    assert tx.state is TxState.TERMINATED
    h.call(41.0, tx.receive_ack)  # too late: nothing
    assert tx.state is TxState.TERMINATED


def test_server_invite_2xx_and_timer_l() -> None:
    h = Harness()
    request = make_request()
    tx = h.make(ServerInviteTransaction, request)
    h.call(0.0, tx.start)
    ok = response(request, 200, "OK")
    h.call(0.0, tx.respond, ok)
    assert tx.state is TxState.ACCEPTED
    h.call(0.5, tx.respond, ok)  # the TU retransmits its 2xx through the transaction
    h.call(0.6, tx.receive_retransmission)  # a retransmitted INVITE is absorbed: the TU resends
    assert h.times("SIP/2.0 200") == [0.0, 0.5]
    assert h.outbox.retransmissions == 1  # the resent 2xx counts as a retransmission
    h.run_until(31.99)
    assert tx.state is TxState.ACCEPTED
    h.run_until(32.0)  # L = 64*T1
    assert state_of(tx) is TxState.TERMINATED
    with pytest.raises(LocalProtocolError):
        h.call(33.0, tx.respond, ok)


def test_server_invite_over_tcp() -> None:
    h = Harness()
    request = make_request(transport="TCP")
    tx = h.make(ServerInviteTransaction, request, TCP_PEER)
    h.call(0.0, tx.start)
    h.call(0.1, tx.respond, response(request, 486, "Busy Here"))
    h.run_until(20.0)
    assert h.times("SIP/2.0 486") == [0.1]  # no timer G
    h.call(20.0, tx.receive_ack)
    assert tx.state is TxState.TERMINATED  # timer I is zero
    assert len(h.timers) == 0


def test_server_invite_over_tcp_without_ack_still_has_timer_h() -> None:
    h = Harness()
    request = make_request(transport="TCP")
    tx = h.make(ServerInviteTransaction, request, TCP_PEER)
    h.call(0.0, tx.start)
    h.call(0.0, tx.respond, response(request, 486, "Busy Here"))
    h.run_until(32.0)
    assert [type(e) for e in h.events()] == [TransactionTimedOut]


@pytest.mark.parametrize(
    ("first", "second"),
    [(486, 200), (486, 180), (486, 486), (200, 180), (200, 486)],
)
def test_illegal_local_responses_on_a_server_invite(first: int, second: int) -> None:
    h = Harness()
    request = make_request()
    tx = h.make(ServerInviteTransaction, request)
    h.call(0.0, tx.start)
    h.call(0.0, tx.respond, response(request, first))
    state = tx.state
    sent = len(h.times("SIP/2.0"))
    with pytest.raises(LocalProtocolError):
        h.call(0.1, tx.respond, response(request, second))
    assert tx.state is state and len(h.times("SIP/2.0")) == sent


# --- server non-INVITE ----------------------------------------------------------------------


def test_server_non_invite_absorbs_then_timer_j_resends_the_final() -> None:
    h = Harness()
    request = make_request("BYE")
    tx = h.make(ServerNonInviteTransaction, request)
    h.call(0.0, tx.start)
    assert tx.state is TxState.TRYING
    h.call(0.5, tx.receive_retransmission)  # nothing sent yet: absorbed
    assert h.times("SIP/2.0") == []
    h.call(1.0, tx.respond, response(request, 200, "OK"))
    assert state_of(tx) is TxState.COMPLETED and tx.final_sent
    assert tx.last_response is None  # lingering 32 s, it keeps only the bytes it resends
    with pytest.raises(LocalProtocolError, match="let go of its request"):
        tx.request  # noqa: B018
    h.call(1.5, tx.receive_retransmission)
    h.call(20.0, tx.receive_retransmission)
    assert h.times("SIP/2.0 200") == [1.0, 1.5, 20.0]
    assert h.outbox.retransmissions == 2
    h.run_until(32.99)
    assert state_of(tx) is TxState.COMPLETED
    h.run_until(33.0)  # J = 64*T1
    assert state_of(tx) is TxState.TERMINATED and h.terminated == [tx]
    h.call(34.0, tx.receive_retransmission)
    assert len(h.times("SIP/2.0 200")) == 3


def test_server_non_invite_provisional_is_resent() -> None:
    h = Harness()
    request = make_request("OPTIONS")
    tx = h.make(ServerNonInviteTransaction, request)
    h.call(0.0, tx.start)
    h.call(0.1, tx.respond, response(request, 100, "Trying"))
    assert tx.state is TxState.PROCEEDING
    h.call(0.6, tx.receive_retransmission)
    assert h.times("SIP/2.0 100") == [0.1, 0.6]
    h.call(1.0, tx.respond, response(request, 200, "OK"))
    assert state_of(tx) is TxState.COMPLETED


def test_server_non_invite_over_tcp_ends_at_once() -> None:
    h = Harness()
    request = make_request("OPTIONS", transport="TCP")
    tx = h.make(ServerNonInviteTransaction, request, TCP_PEER)
    h.call(0.0, tx.start)
    h.call(0.0, tx.respond, response(request, 200, "OK"))
    assert tx.state is TxState.TERMINATED and len(h.timers) == 0


@pytest.mark.parametrize(("first", "second"), [(200, 200), (200, 100), (404, 200), (486, 180)])
def test_illegal_local_responses_on_a_server_non_invite(first: int, second: int) -> None:
    h = Harness()
    request = make_request("OPTIONS")
    tx = h.make(ServerNonInviteTransaction, request)
    h.call(0.0, tx.start)
    h.call(0.0, tx.respond, response(request, first))
    with pytest.raises(LocalProtocolError):
        h.call(0.1, tx.respond, response(request, second))
    assert tx.state is TxState.COMPLETED


# --- messages built by the transaction layer ----------------------------------------------------


def test_make_response_copies_what_section_8_2_6_2_says() -> None:
    request = make_request()
    resp = make_response(
        request, 180, "Ringing", to_tag="t9", extra=(("Contact", "<sip:b@x>"),), body=b"sdp"
    )
    assert (resp.status, resp.reason, resp.body) == (180, "Ringing", b"sdp")
    assert resp.headers.get_all("via") == request.headers.get_all("via")
    assert resp.from_ == request.from_
    assert resp.call_id == request.call_id and resp.cseq == request.cseq
    assert resp.to.tag == "t9" and resp.to.uri == request.to.uri
    assert resp.headers.get_all("record-route") == ["<sip:rr.example.com;lr>"]
    assert resp.headers.get("contact") == "<sip:b@x>"
    assert "route" not in resp.headers and "max-forwards" not in resp.headers
    assert "record-route" not in make_response(request, 486, "Busy").headers
    assert "record-route" not in make_response(request, 100, "Trying").headers
    # a To that already has a tag keeps it
    tagged = Request("BYE", request.uri, request.headers.set("to", "<sip:bob@x>;tag=old"))
    assert make_response(tagged, 200, "OK", to_tag="new").to.tag == "old"
    assert parse_message(resp.encode()) == Response(
        resp.status, resp.reason, resp.headers.add("content-length", "3"), resp.body
    )


def test_build_cancel_per_section_9_1() -> None:
    request = make_request(cseq=42)
    cancel = build_cancel(request)
    assert (cancel.method, cancel.uri) == ("CANCEL", request.uri)
    assert cancel.headers.get_all("via") == [request.headers.get("via")]
    assert cancel.top_via.branch == request.top_via.branch
    assert (cancel.cseq.number, cancel.cseq.method) == (42, "CANCEL")
    assert cancel.to == request.to and cancel.from_ == request.from_
    assert cancel.call_id == request.call_id
    assert cancel.headers.get_all("route") == request.headers.get_all("route")
    assert cancel.body == b"" and "contact" not in cancel.headers


def test_server_key_matches_ack_to_its_invite() -> None:
    invite = make_request()
    ack = Request("ACK", invite.uri, invite.headers.set("cseq", "1 ACK"))
    assert server_key(ack, ack.top_via) == server_key(invite, invite.top_via)
    assert server_key(invite, invite.top_via) == ("z9hG4bKtx1", "10.0.0.1:5060", "INVITE")
    bye = make_request("BYE")
    assert server_key(bye, bye.top_via)[2] == "BYE"
    no_port = Request("BYE", "sip:x@y", bye.headers.set("via", "SIP/2.0/UDP host;branch=z9hG4bKb"))
    assert server_key(no_port, no_port.top_via)[1] == "host:5060"


@pytest.mark.parametrize(
    "table", [CLIENT_INVITE, CLIENT_NON_INVITE, SERVER_INVITE, SERVER_NON_INVITE]
)
def test_tables_never_leave_terminated(table: dict[tuple[TxState, object], TxState]) -> None:
    assert not any(state is TxState.TERMINATED for state, _ in table)


# --- through endpoints -----------------------------------------------------------------------

A = Address("10.0.0.1", 5060)
B = Address("10.0.0.2", 5060)


def two_endpoints() -> tuple[SipEndpoint, SipEndpoint, Link]:
    a = SipEndpoint(local={"udp": A})
    b = SipEndpoint(local={"udp": B})
    return a, b, Link((A, a), (B, b))


def test_late_response_to_a_finished_transaction_is_a_stray() -> None:
    a, b, link = two_endpoints()
    tx = a.request("OPTIONS", uri="sip:10.0.0.2", now=0.0, destination=B)
    request = tx.request
    link.deliver()
    [received] = link.of_type(B, RequestReceived)
    b.respond(received.transaction, 200, "OK", link.now)
    link.deliver()
    [finished] = link.of_type(A, RequestFinished)
    assert finished.status == 200 and finished.transaction is tx
    late = make_response(request, 200, "OK", to_tag="zz").encode()
    a.receive(late, B, 1.0)  # during timer K: absorbed by the transaction
    assert a.stats.stray_responses == 0
    link.advance(6.0)  # K is over: the transaction is gone
    a.receive(late, B, link.now)
    assert a.stats.stray_responses == 1
    assert a.datagrams_to_send() == [] and a.events() == []


def test_endpoint_request_timeout_is_reported_as_408() -> None:
    a, b, link = two_endpoints()
    link.drop = lambda data, src, dst: src == A
    a.request("OPTIONS", uri="sip:10.0.0.2", now=0.0, destination=B)
    link.advance(33.0)
    [finished] = link.of_type(A, RequestFinished)
    assert (finished.status, finished.response) == (408, None)
    assert link.methods_sent(A).count("OPTIONS") == 11


def test_endpoint_absorbs_duplicate_requests() -> None:
    a, b, link = two_endpoints()
    a.request("OPTIONS", uri="sip:10.0.0.2", now=0.0, destination=B)
    first = a.datagrams_to_send()
    assert len(first) == 1
    data, dest = first[0]
    for _ in range(3):
        b.receive(data, A, 0.1)
    assert len(b.events()) == 1  # one RequestReceived for three copies
    assert b.datagrams_to_send() == []


@pytest.mark.parametrize(
    "cls",
    [ClientInviteTransaction, ClientNonInviteTransaction, ServerInviteTransaction,
     ServerNonInviteTransaction],
)  # fmt: skip
def test_transactions_carry_no_instance_dict(cls: Any) -> None:
    # Tens of thousands linger at a few hundred calls a second: a dict apiece was one
    # more object each for the cyclic collector.
    tx = Harness().make(cls, make_request("INVITE" if "Invite" in cls.__name__ else "BYE"))
    assert not hasattr(tx, "__dict__")
