"""An in-memory network between sans-IO endpoints, with a clock the test moves by hand."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from voiceplane.sip.addressing import Address
from voiceplane.sip.endpoint import SipEndpoint
from voiceplane.sip.message import Message, parse_message

Drop = Callable[[bytes, Address, Address], bool]
T = TypeVar("T")


class Link:
    """Carries what each endpoint sends to the endpoint at the destination address.

    ``drop(data, source, destination)`` returning True loses that datagram; ``sent``
    records every datagram that was put on the wire (dropped or not), for assertions.
    """

    def __init__(self, *endpoints: tuple[Address, SipEndpoint]) -> None:
        self.endpoints = dict(endpoints)
        self.now = 0.0
        self.drop: Drop = lambda data, src, dst: False
        self.sent: list[tuple[Address, Address, bytes]] = []
        self.sent_at: list[float] = []  # the clock when each of ``sent`` went out
        self.events: dict[Address, list[object]] = {addr: [] for addr in self.endpoints}

    def deliver(self) -> None:
        """Move datagrams until no endpoint has anything left to send."""
        moved = True
        while moved:
            moved = False
            for src, ep in self.endpoints.items():
                for data, dst in ep.datagrams_to_send():
                    moved = True
                    self.sent.append((src, dst, data))
                    self.sent_at.append(self.now)
                    if self.drop(data, src, dst):
                        continue
                    target = self.endpoints.get(Address(dst.host, dst.port, dst.transport))
                    if target is not None:
                        target.receive(data, Address(src.host, src.port, dst.transport), self.now)
                self.events[src].extend(ep.events())

    def advance(self, seconds: float, step: float = 0.05) -> None:
        """Move the clock forward, firing every timer that falls due on the way."""
        end = self.now + seconds
        self.deliver()
        while True:
            deadlines = [
                d for ep in self.endpoints.values() if (d := ep.next_deadline()) is not None
            ]
            due = min(deadlines, default=None)
            if due is None or due > end:
                break
            self.now = max(self.now, due)
            for ep in self.endpoints.values():
                ep.handle_timer(self.now)
            self.deliver()
        self.now = end
        self.deliver()

    def methods_sent(self, src: Address) -> list[str]:
        """First line tokens of what ``src`` sent: "INVITE", "ACK", "200", ..."""
        return [_first_token(data) for s, _, data in self.sent if s == src]

    def times_sent(self, src: Address, first_token: str) -> list[float]:
        """When ``src`` put a message with that method or status on the wire."""
        return [
            at
            for (s, _, data), at in zip(self.sent, self.sent_at, strict=True)
            if s == src and _first_token(data) == first_token
        ]

    def of_type(self, address: Address, kind: type[T]) -> list[T]:
        """The events of ``kind`` the endpoint at ``address`` has emitted so far."""
        return [e for e in self.events[address] if isinstance(e, kind)]

    def messages_sent(self, src: Address, first_token: str | None = None) -> list[Message]:
        """What ``src`` put on the wire, parsed; only those whose method or status is
        ``first_token`` when it is given ("BYE", "200" ...)."""
        out = []
        for s, _, data in self.sent:
            if s != src:
                continue
            if first_token is None or _first_token(data) == first_token:
                out.append(parse_message(data))
        return out

    def inject(self, data: bytes, src: Address, dst: Address) -> None:
        """Put raw bytes on the wire from ``src`` (which need not be an endpoint) to ``dst``."""
        self.sent.append((src, dst, data))
        self.sent_at.append(self.now)
        self.endpoints[dst].receive(data, src, self.now)
        self.deliver()


def _first_token(data: bytes) -> str:
    first = data.split(b"\r\n", 1)[0].decode(errors="replace")
    return first.split(" ")[1] if first.startswith("SIP/2.0") else first.split(" ")[0]
