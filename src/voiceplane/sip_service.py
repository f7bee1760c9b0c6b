"""The SIP service that ``voiceplane serve`` runs: a user agent on the configured address.

Until numbers and flows exist (the call engine), every incoming INVITE is answered 404:
the platform serves no number yet. OPTIONS is answered 200 by the user agent.
"""

from __future__ import annotations

import logging

from voiceplane.config import SipSettings
from voiceplane.sip.timers import TimerValues
from voiceplane.sip.ua import InboundCall, UserAgent

log = logging.getLogger(__name__)


class SipService:
    def __init__(self, settings: SipSettings) -> None:
        self.settings = settings
        host, port = settings.listen.host, settings.listen.port
        self.ua = UserAgent(
            listen=[(transport, host, port) for transport in settings.transports],
            user_agent=settings.user_agent,
            timer_values=TimerValues(
                t1=settings.t1_ms / 1000, t2=settings.t2_ms / 1000, t4=settings.t4_ms / 1000
            ),
            on_call=self._on_call,
        )

    async def start(self) -> None:
        await self.ua.start()
        for address in self.ua.addresses.values():
            log.info("SIP listening on %s", address)

    async def stop(self) -> None:
        await self.ua.stop()

    def _on_call(self, call: InboundCall) -> None:
        call.reject(404, "Not Found")
