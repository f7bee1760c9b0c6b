"""Dialogs (RFC 3261 section 12): the state two user agents share for the life of a call."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from functools import lru_cache

from .errors import SipParseError
from .headers import NameAddr, without_tag
from .message import Headers, Request, Response

DialogId = tuple[str, str, str]  # (Call-ID, local tag, remote tag)


class DialogState(enum.Enum):
    EARLY = "early"
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"


@dataclass(slots=True)
class Dialog:
    call_id: str
    local_tag: str
    remote_tag: str
    local_uri: str  # our From (UAC) or To (UAS) value without the tag
    remote_uri: str
    remote_target: str  # the peer's Contact URI: where in-dialog requests go
    local_contact: str
    local_seq: int
    remote_seq: int | None = None
    route_set: tuple[str, ...] = ()
    state: DialogState = DialogState.EARLY
    user_agent: str = ""
    extra: tuple[tuple[str, str], ...] = field(default=())

    @property
    def id(self) -> DialogId:
        return (self.call_id, self.local_tag, self.remote_tag)

    @classmethod
    def as_uac(cls, invite: Request, response: Response, *, user_agent: str = "") -> Dialog:
        """Section 12.1.2: from our INVITE and a 1xx/2xx with a To tag."""
        to_tag = response.to_tag
        if not to_tag:
            raise SipParseError("dialog-creating response without a To tag")
        return cls(
            call_id=invite.call_id,
            local_tag=invite.from_tag or "",
            remote_tag=to_tag,
            local_uri=_without_tag(invite.headers.get("from") or ""),
            remote_uri=_without_tag(invite.headers.get("to") or ""),
            remote_target=_contact_uri(response.headers) or invite.uri,
            local_contact=invite.headers.get("contact") or "",
            local_seq=invite.cseq.number,
            # Section 12.1.2: the route set is the Record-Route in reverse order.
            route_set=tuple(reversed(response.headers.get_all("record-route"))),
            state=DialogState.CONFIRMED if 200 <= response.status < 300 else DialogState.EARLY,
            user_agent=user_agent,
        )

    @classmethod
    def as_uas(
        cls, invite: Request, *, local_tag: str, local_contact: str, local_seq: int,
        user_agent: str = "",
    ) -> Dialog:  # fmt: skip
        """Section 12.1.1: from the INVITE we answer with a tagged 1xx/2xx."""
        return cls(
            call_id=invite.call_id,
            local_tag=local_tag,
            remote_tag=invite.from_tag or "",
            local_uri=_without_tag(invite.headers.get("to") or ""),
            remote_uri=_without_tag(invite.headers.get("from") or ""),
            remote_target=_contact_uri(invite.headers) or invite.from_.uri,
            local_contact=local_contact,
            local_seq=local_seq,
            remote_seq=invite.cseq.number,
            route_set=tuple(invite.headers.get_all("record-route")),
            user_agent=user_agent,
        )

    def new_request(
        self,
        method: str,
        *,
        via: str,
        body: bytes = b"",
        content_type: str | None = None,
        extra: tuple[tuple[str, str], ...] = (),
        cseq: int | None = None,
    ) -> Request:
        """Section 12.2.1.1: a request inside the dialog. ACK and CANCEL reuse a CSeq."""
        if cseq is None:
            self.local_seq += 1
            cseq = self.local_seq
        items: list[tuple[str, str]] = [
            ("via", via),
            ("max-forwards", "70"),
            ("from", f"{self.local_uri};tag={self.local_tag}"),
            ("to", f"{self.remote_uri};tag={self.remote_tag}"),
            ("call-id", self.call_id),
            ("cseq", f"{cseq} {method}"),
        ]
        items.extend(("route", route) for route in self.route_set)
        if method in ("INVITE", "UPDATE", "SUBSCRIBE", "REFER"):
            items.append(("contact", self.local_contact))
        if self.user_agent:
            items.append(("user-agent", self.user_agent))
        if body and content_type:
            items.append(("content-type", content_type))
        items.extend((name.lower(), value) for name, value in extra)
        return Request(method, self.remote_target, Headers._trusted(tuple(items)), body)

    def accept_remote_request(self, request: Request) -> bool:
        """Section 12.2.2: a CSeq lower than the last one is out of order (answer 500)."""
        number = request.cseq.number
        if request.method in ("ACK", "CANCEL"):
            return True
        if self.remote_seq is not None and number <= self.remote_seq:
            return False
        self.remote_seq = number
        return True

    def refresh_target(self, message: Request | Response) -> None:
        """Section 12.2: a target-refresh request or its 2xx may change the remote target."""
        target = _contact_uri(message.headers)
        if target:
            self.remote_target = target


def _without_tag(value: str) -> str:
    return without_tag(value)


def _contact_uri(headers: Headers) -> str | None:
    value = headers.get("contact")
    if not value:
        return None
    return _uri_of_contact(value)


@lru_cache(maxsize=1024)  # a peer sends the same Contact on every call
def _uri_of_contact(value: str) -> str | None:
    try:
        return NameAddr.parse(value).uri
    except SipParseError:
        return None
