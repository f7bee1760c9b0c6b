"""Two endpoints on a ``Link``, and the moves of a call between them, for the leg tests."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import TypedDict, Unpack

from tests.sip.link import Link
from voiceplane.sip.addressing import Address
from voiceplane.sip.digest import Credentials
from voiceplane.sip.endpoint import SipEndpoint
from voiceplane.sip.legs import IncomingCall, IncomingLeg, Leg, LegState, OutgoingLeg
from voiceplane.sip.timers import TimerValues

SDP_A = (
    b"v=0\r\no=alice 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n"
    b"m=audio 4000 RTP/AVP 0\r\n"
)
SDP_B = (
    b"v=0\r\no=bob 2 2 IN IP4 10.0.0.2\r\ns=-\r\nc=IN IP4 10.0.0.2\r\nt=0 0\r\n"
    b"m=audio 5000 RTP/AVP 0\r\n"
)
SDP_A2 = SDP_A.replace(b"4000", b"4002").replace(b"1 1 IN", b"1 2 IN")
SDP_B2 = SDP_B.replace(b"5000", b"5002").replace(b"2 2 IN", b"2 3 IN")


class CallOptions(TypedDict, total=False):
    """What a test may set of ``SipEndpoint.invite``; the pair fills in the rest."""

    sdp: bytes
    request_uri: str | None
    ring_timeout: float | None
    credentials: Credentials | None
    display_name: str | None
    extra_headers: tuple[tuple[str, str], ...]


def state_of(leg: Leg) -> LegState:
    """``leg.state`` read afresh: mypy keeps an earlier assert's narrowing of ``leg.state``
    across the calls that move the leg on, and would take a later assert as dead."""
    return leg.state


class Pair:
    """Endpoint ``a`` (the caller, at ``A``) and endpoint ``b`` (the callee, at ``B``)."""

    def __init__(
        self,
        transport: str = "udp",
        *,
        timer_values: TimerValues | None = None,
        pin_outbound: bool = True,
        seed: int = 7,
    ) -> None:
        self.A = Address("10.0.0.1", 5060, transport)
        self.B = Address("10.0.0.2", 5060, transport)
        self.a = SipEndpoint(
            local={transport: self.A},
            timer_values=timer_values,
            rng=random.Random(seed),
            pin_outbound=pin_outbound,
        )
        self.b = SipEndpoint(
            local={transport: self.B},
            timer_values=timer_values,
            rng=random.Random(seed + 1),
            pin_outbound=pin_outbound,
        )
        self.link = Link((self.A, self.a), (self.B, self.b))

    @property
    def now(self) -> float:
        return self.link.now

    def call(self, **kwargs: Unpack[CallOptions]) -> OutgoingLeg:
        """``a`` places a call to ``b``; the INVITE is delivered."""
        kwargs.setdefault("sdp", SDP_A)
        leg = self.a.invite(
            to_uri="sip:123@10.0.0.2",
            from_uri="sip:999@10.0.0.1",
            now=self.now,
            destination=self.B,
            **kwargs,
        )
        self.link.deliver()
        return leg

    def incoming(self) -> IncomingLeg:
        """The latest call ``b`` was offered."""
        return self.link.of_type(self.B, IncomingCall)[-1].leg

    def at_a(self, action: Callable[[float], object]) -> None:
        """Do ``action(now)`` on ``a``'s side, then let the network carry what it produced."""
        action(self.now)
        self.a.drain(self.now)
        self.link.deliver()

    def at_b(self, action: Callable[[float], object]) -> None:
        action(self.now)
        self.b.drain(self.now)
        self.link.deliver()

    def answered(self, **kwargs: Unpack[CallOptions]) -> tuple[OutgoingLeg, IncomingLeg]:
        """A call rung and answered (and ACKed, unless the link drops it)."""
        leg = self.call(**kwargs)
        inc = self.incoming()
        self.at_b(inc.ring)
        self.at_b(lambda now: inc.answer(SDP_B, now))
        return leg, inc

    def drop_first(
        self, count: int, match: Callable[[bytes, Address, Address], bool]
    ) -> list[bytes]:
        """Lose the first ``count`` datagrams ``match`` selects; returns what was lost."""
        lost: list[bytes] = []

        def drop(data: bytes, src: Address, dst: Address) -> bool:
            if len(lost) < count and match(data, src, dst):
                lost.append(data)
                return True
            return False

        self.link.drop = drop
        return lost
