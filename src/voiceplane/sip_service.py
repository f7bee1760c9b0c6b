"""The SIP service that ``voiceplane serve`` runs: a user agent on the configured address.

Incoming INVITEs go to the incoming-call side (:class:`voiceplane.calls.incoming.IncomingCalls`)
with the numbers read here, at the SIP edge: the DID from the Request-URI's user part (the
To header's when that has none), the caller from the From header's. Numbers are given
E.164 with a ``+``: an operator that sends ``918047100000`` means ``+918047100000``. Until
``incoming`` is set every INVITE is answered 404. OPTIONS is answered 200 by the user agent.
"""

from __future__ import annotations

import logging
import re
from typing import Protocol
from urllib.parse import unquote

from voiceplane.config import SipSettings
from voiceplane.sip.errors import SipParseError
from voiceplane.sip.headers import NameAddr
from voiceplane.sip.message import Request
from voiceplane.sip.timers import TimerValues
from voiceplane.sip.ua import InboundCall, UserAgent
from voiceplane.sip.uri import SipUri

log = logging.getLogger(__name__)

_NUMBER = re.compile(r"\+?[0-9]{1,32}")
_SEPARATORS = str.maketrans("", "", "-.() ")


class IncomingHandler(Protocol):
    async def handle(self, call: InboundCall, *, caller: str, callee: str | None) -> None: ...

    def key_pressed(self, sip_call_id: str, key: str) -> bool:
        """A key sent by SIP INFO on the call ``sip_call_id``; False if no such call."""
        ...


_DTMF_TYPES = ("application/dtmf-relay", "application/dtmf")
_SIGNAL = re.compile(r"(?im)^\s*signal\s*=\s*([0-9*#A-Da-d])\s*$")


def info_key(request: Request) -> str | None:
    """The key of a SIP INFO DTMF request (``application/dtmf-relay``: ``Signal=5``, or
    ``application/dtmf``: the key alone), else None."""
    kind = (request.headers.get("content-type") or "").split(";", 1)[0].strip().lower()
    if request.method != "INFO" or kind not in _DTMF_TYPES:
        return None
    text = request.body.decode("ascii", errors="replace")
    if kind == "application/dtmf":
        key = text.strip()
        return key.upper() if re.fullmatch(r"[0-9*#A-Da-d]", key) else None
    found = _SIGNAL.search(text)
    return found[1].upper() if found else None


def number_of(uri: str) -> str | None:
    """The E.164 number a ``sip:``/``sips:``/``tel:`` URI names (``+`` added), or None."""
    text = uri.strip()
    if text[:4].lower() == "tel:":
        user: str | None = text[4:]
    else:
        try:
            user = SipUri.parse(text).user
        except SipParseError:
            return None
    if not user:
        return None
    candidate = unquote(user).split(";", 1)[0].translate(_SEPARATORS)
    if not _NUMBER.fullmatch(candidate):
        return None
    return candidate if candidate.startswith("+") else "+" + candidate


def _header_uri(call: InboundCall, name: str) -> str:
    value = call.request.headers.get(name) or ""
    try:
        return NameAddr.parse(value).uri
    except SipParseError:
        return value


def numbers_of(call: InboundCall) -> tuple[str, str | None]:
    """(caller, DID) of an incoming call; the caller is ``anonymous`` when not a number."""
    callee = number_of(call.request_uri) or number_of(_header_uri(call, "to"))
    caller_uri = _header_uri(call, "from")
    caller = number_of(caller_uri) or "anonymous"
    return caller, callee


class SipService:
    def __init__(self, settings: SipSettings) -> None:
        self.settings = settings
        host, port = settings.listen.host, settings.listen.port
        self.incoming: IncomingHandler | None = None
        self.ua = UserAgent(
            listen=[(transport, host, port) for transport in settings.transports],
            user_agent=settings.user_agent,
            timer_values=TimerValues(
                t1=settings.t1_ms / 1000, t2=settings.t2_ms / 1000, t4=settings.t4_ms / 1000
            ),
            on_call=self._on_call,
            on_request=self._on_request,
        )

    async def start(self) -> None:
        await self.ua.start()
        for address in self.ua.addresses.values():
            log.info("SIP listening on %s", address)

    async def stop(self) -> None:
        await self.ua.stop()

    def _on_request(self, request: Request) -> tuple[int, str] | None:
        """SIP INFO digits go to the incoming call they belong to; the rest to the UA."""
        key = info_key(request)
        if key is None or self.incoming is None:
            return None
        if self.incoming.key_pressed(request.call_id, key):
            return (200, "OK")
        return (481, "Call/Transaction Does Not Exist")

    async def _on_call(self, call: InboundCall) -> None:
        if self.incoming is None:
            call.reject(404, "Not Found")
            return
        caller, callee = numbers_of(call)
        await self.incoming.handle(call, caller=caller, callee=callee)
