"""Where the engine's calls go: the operator's SIP trunk (or the sandbox operator).

The engine asks for "a call to this number with this caller ID"; this turns that into the
URIs and the destination of an INVITE. Credentials, when the trunk asks for them, come from
the ``[trunk]`` settings.
"""

from __future__ import annotations

from dataclasses import dataclass

from voiceplane.sip.addressing import Address
from voiceplane.sip.digest import Credentials
from voiceplane.sip.ua import OutboundCall, UserAgent

from .tracker import WallClock


@dataclass(frozen=True, slots=True)
class Trunk:
    """The operator at ``destination``, reached by ``ua``."""

    ua: UserAgent
    destination: Address
    credentials: Credentials | None = None

    def wall_clock(self) -> WallClock:
        """Turns the SIP layer's loop-clock times (in outcomes) into UNIX timestamps."""
        return WallClock(self.ua.wall_time(0.0) or 0.0)

    def dial(
        self, number: str, *, caller_id: str | None, sdp: bytes, ring_timeout: float | None
    ) -> OutboundCall:
        """Send the INVITE for ``number``; ``caller_id`` goes in the From header."""
        host = self.destination.host
        if ":" in host:  # an IPv6 literal
            host = f"[{host}]"
        target = f"{host}:{self.destination.port}"
        local = self.ua.addresses.get(self.destination.transport)
        local_part = target if local is None else f"{local.host}:{local.port}"
        caller = caller_id or "anonymous"
        return self.ua.invite(
            to_uri=f"sip:{number}@{target}",
            from_uri=f"sip:{caller}@{local_part}",
            destination=self.destination,
            sdp=sdp,
            ring_timeout=ring_timeout,
            credentials=self.credentials,
        )
