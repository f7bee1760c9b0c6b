"""An in-memory network between sans-IO endpoints, with a clock the test moves by hand."""

from __future__ import annotations

from collections.abc import Callable

from voiceplane.sip.addressing import Address
from voiceplane.sip.endpoint import SipEndpoint

Drop = Callable[[bytes, Address, Address], bool]


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
            deadlines = [d for ep in self.endpoints.values() if (d := ep.next_deadline()) is not None]
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
        out = []
        for s, _, data in self.sent:
            if s == src:
                first = data.split(b"\r\n", 1)[0].decode()
                out.append(first.split(" ")[1] if first.startswith("SIP/2.0") else first.split(" ")[0])
        return out
