"""SDP: parsing, serialising and the offer/answer model (RFC 8866, RFC 3264).

Only as much of SDP as a voice platform needs: one audio stream of RTP/AVP carrying G.711
(PCMU, PCMA) and RFC 4733 telephone-events, plus enough of everything else to reject it
politely. The code is sans-IO: no sockets, no clock, no randomness; session ids, versions,
addresses and ports are passed in.

What the parser keeps and what it drops:

* ``v=``, ``o=``, ``s=``, ``c=``, ``m=`` and ``a=`` lines are modelled; ``i=``, ``u=``,
  ``e=``, ``p=``, ``b=``, ``t=``, ``r=``, ``z=`` and ``k=`` are accepted and dropped (SIP
  sessions are unbounded, ``t=0 0``, RFC 3264 section 5).
* ``a=rtpmap`` and ``a=fmtp`` of RTP streams become ``Codec`` values; the direction
  attributes become ``MediaDescription.direction`` (a session-level direction is folded
  into every stream that has none, RFC 8866 section 6.7); every other attribute is kept
  verbatim, in order.

Anything that is not SDP raises ``SipParseError`` and nothing else; ``status_hint`` is 488
when the description is readable but cannot be used.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache

from .errors import SipParseError

Attributes = tuple[tuple[str, str | None], ...]

SENDRECV = "sendrecv"
SENDONLY = "sendonly"
RECVONLY = "recvonly"
INACTIVE = "inactive"

# (we may send, we may receive) for each direction attribute, RFC 3264 section 5.1.
_DIRECTION_BITS: dict[str, tuple[bool, bool]] = {
    SENDRECV: (True, True),
    SENDONLY: (True, False),
    RECVONLY: (False, True),
    INACTIVE: (False, False),
}
_BITS_DIRECTION = {bits: name for name, bits in _DIRECTION_BITS.items()}
DIRECTIONS = frozenset(_DIRECTION_BITS)

DEFAULT_PTIME = 20  # ms; RFC 3551 section 4.5 default packetisation for G.711

# RFC 3551 section 6, tables 4 and 5: payload types that need no rtpmap line.
# (name, clock rate, channels)
STATIC_PAYLOAD_TYPES: dict[int, tuple[str, int, int]] = {
    0: ("PCMU", 8000, 1), 3: ("GSM", 8000, 1), 4: ("G723", 8000, 1), 5: ("DVI4", 8000, 1),
    6: ("DVI4", 16000, 1), 7: ("LPC", 8000, 1), 8: ("PCMA", 8000, 1), 9: ("G722", 8000, 1),
    10: ("L16", 44100, 2), 11: ("L16", 44100, 1), 12: ("QCELP", 8000, 1), 13: ("CN", 8000, 1),
    14: ("MPA", 90000, 1), 15: ("G728", 8000, 1), 16: ("DVI4", 11025, 1),
    17: ("DVI4", 22050, 1), 18: ("G729", 8000, 1), 25: ("CelB", 90000, 1),
    26: ("JPEG", 90000, 1), 28: ("nv", 90000, 1), 31: ("H261", 90000, 1),
    32: ("MPV", 90000, 1), 33: ("MP2T", 90000, 1), 34: ("H263", 90000, 1),
}  # fmt: skip

# RFC 4733 section 2.4.1: without an event list, a telephone-event receiver is assumed to
# handle the DTMF events 0-15.
DEFAULT_EVENTS = frozenset(range(16))
_MAX_EVENT = 255  # the event field of RFC 4733 section 2.3 is 8 bits

# RFC 8866 section 9: token, and the proto of an m= line (token *("/" token)).
_TOKEN_CHARS = r"[!#$%&'*+\-.^_`{|}~0-9A-Za-z]+"
_TOKEN = re.compile(_TOKEN_CHARS)
_PROTO = re.compile(rf"{_TOKEN_CHARS}(?:/{_TOKEN_CHARS})*")
# Numbers are ASCII digits only (int() would take "+1", "1_0" and Arabic-Indic digits) and
# bounded (1 to 64 digits), so a hostile body cannot make int() chew on megabytes of digits.
_PORT = re.compile(r"([0-9]{1,5})(?:/([0-9]{1,5}))?")
_RTPMAP = re.compile(r"([0-9]{1,3})[ \t]+([^/ \t]+)/([0-9]{1,10})(?:/([0-9]{1,3}))?")
_FMTP = re.compile(r"([0-9]{1,3})(?:[ \t]+(.*))?")
_EVENT_RANGE = re.compile(r"([0-9]{1,3})(?:-([0-9]{1,3}))?")
_FIELD_SEP = re.compile(r"[ \t]+")

# RFC 8866 section 5: the type letters of SDP. A description with any other letter must be
# ignored as a whole, so it is readable but not acceptable (488).
_LINE_TYPES = frozenset("vosiuepcbtrzkam")
_NETTYPE = "IN"
_ADDRTYPES = frozenset({"IP4", "IP6"})


@dataclass(frozen=True, slots=True)
class Codec:
    """One RTP payload format: an ``a=rtpmap`` line plus its ``a=fmtp`` parameters."""

    payload_type: int
    name: str
    clock_rate: int
    channels: int = 1
    fmtp: str | None = None

    @property
    def is_telephone_event(self) -> bool:
        return self.name.lower() == "telephone-event"

    def same_format(self, other: Codec) -> bool:
        """Same encoding whatever the payload type number (RFC 3264 section 6.1).

        Encoding names are case-insensitive (RFC 4855 section 3).
        """
        return (
            self.name.lower() == other.name.lower()
            and self.clock_rate == other.clock_rate
            and self.channels == other.channels
        )

    def with_fmtp(self, fmtp: str | None) -> Codec:
        """The same codec with ``fmtp`` (``dataclasses.replace``, at a fraction of its cost)."""
        return Codec(self.payload_type, self.name, self.clock_rate, self.channels, fmtp)

    def rtpmap(self) -> str:
        """The value of the ``a=rtpmap`` attribute (RFC 8866 section 6.6)."""
        base = f"{self.payload_type} {self.name}/{self.clock_rate}"
        # Encoding parameters default to one channel (RFC 8866 section 6.6), so leave it out.
        return base if self.channels == 1 else f"{base}/{self.channels}"


PCMU = Codec(0, "PCMU", 8000)
PCMA = Codec(8, "PCMA", 8000)
# 101 is the customary dynamic number; 0-16 is DTMF 0-9 * # A-D plus flash (RFC 4733 section 3.2).
TELEPHONE_EVENT = Codec(101, "telephone-event", 8000, fmtp="0-16")
DEFAULT_CODECS: tuple[Codec, ...] = (PCMU, PCMA, TELEPHONE_EVENT)


@dataclass(frozen=True, slots=True)
class MediaDescription:
    """One ``m=`` section.

    For RTP protocols ``formats`` are the payload type numbers of the ``m=`` line and
    ``codecs`` the ones among them that are known (from ``a=rtpmap`` or the static table),
    in the same order. For other protocols (``udptl`` for T.38, ``TCP/BFCP`` ...) the format
    tokens are kept verbatim in ``raw_formats`` and ``formats``/``codecs`` are empty.
    ``port_count`` is the ``/<number of ports>`` suffix of the port, if any.
    """

    media: str
    port: int
    protocol: str
    formats: tuple[int, ...]
    codecs: tuple[Codec, ...]
    direction: str = SENDRECV
    connection: str | None = None
    attributes: Attributes = ()
    port_count: int | None = None
    raw_formats: tuple[str, ...] = ()

    @property
    def is_rtp(self) -> bool:
        return _is_rtp(self.protocol)

    @property
    def rejected(self) -> bool:
        """Port zero: rejected in an answer or disabled in an offer (RFC 3264 section 6)."""
        return self.port == 0

    @property
    def ptime(self) -> int:
        """Packet time (ms) the author wants to receive; 20 when absent (RFC 8866 section 6.4)."""
        value = self.attribute("ptime")
        try:
            ptime = int(float(value)) if value else 0
        except ValueError:
            ptime = 0
        return ptime if 0 < ptime <= 1000 else DEFAULT_PTIME

    def attribute(self, name: str) -> str | None:
        """First value of a kept attribute; ``""`` for a flag, ``None`` when absent."""
        return _attribute(self.attributes, name)

    def codec(self, payload_type: int) -> Codec | None:
        """The codec a payload type number stands for in this stream."""
        return next((c for c in self.codecs if c.payload_type == payload_type), None)

    @property
    def voice_codecs(self) -> tuple[Codec, ...]:
        return tuple(c for c in self.codecs if not c.is_telephone_event)

    @property
    def telephone_event(self) -> Codec | None:
        """The telephone-event at the clock rate of the first voice codec, else the first one.

        RFC 4733 section 2.1: events share the clock of the audio they accompany.
        """
        events = [c for c in self.codecs if c.is_telephone_event]
        voice = self.voice_codecs
        if voice:
            for event in events:
                if event.clock_rate == voice[0].clock_rate:
                    return event
        return events[0] if events else None


@dataclass(frozen=True, slots=True)
class SessionDescription:
    """A whole SDP body. ``address`` is the ``o=`` address; ``connection`` the session ``c=``."""

    origin_username: str
    session_id: int
    session_version: int
    address: str
    connection: str | None
    media: tuple[MediaDescription, ...]
    session_name: str = "-"
    address_type: str = "IP4"
    attributes: Attributes = ()

    @classmethod
    def parse(cls, data: bytes | str) -> SessionDescription:
        return _parse(data)

    def encode(self) -> bytes:
        """The description as SDP text, CRLF line ends (RFC 8866 section 5)."""
        lines = [
            "v=0",
            f"o={self.origin_username} {self.session_id} {self.session_version}"
            f" {_NETTYPE} {self.address_type} {self.address}",
            f"s={self.session_name}",
        ]
        if self.connection is not None:
            lines.append(_connection_line(self.connection, self.address_type))
        lines.append("t=0 0")
        lines.extend(_attribute_line(name, value) for name, value in self.attributes)
        for media in self.media:
            lines.extend(_media_lines(media, self.address_type))
        text = "\r\n".join(lines)
        breaks = len(lines) - 1
        if text.count("\r") != breaks or text.count("\n") != breaks or "\0" in text:
            for line in lines:
                # A value smuggling a line break would inject lines into the body.
                if "\r" in line or "\n" in line or "\0" in line:
                    raise ValueError(f"SDP field contains a line break or NUL: {line!r}")
        return (text + "\r\n").encode("utf-8")

    @property
    def audio(self) -> MediaDescription | None:
        """The first active audio stream, else the first audio stream, else ``None``."""
        streams = [m for m in self.media if m.media == "audio"]
        return next((m for m in streams if not m.rejected), streams[0] if streams else None)

    def connection_for(self, media: MediaDescription) -> str | None:
        """The stream's ``c=`` address: media level overrides session (RFC 8866 section 5.7)."""
        return media.connection if media.connection is not None else self.connection

    def effective_direction(self, media: MediaDescription) -> str:
        """The stream's direction, counting RFC 2543 hold (``c=0.0.0.0``) as "do not send to me".

        RFC 3264 section 8.4 keeps this legacy form recognisable: nobody can send media to
        the unspecified address, so the author of the description cannot receive.
        """
        address = self.connection_for(media)
        if address is None or not _is_unspecified(address):
            return media.direction
        send, _ = _DIRECTION_BITS[media.direction]
        return _BITS_DIRECTION[(send, False)]

    def rtp_address(self) -> tuple[str, int] | None:
        """``(host, port)`` of the ``audio`` stream; port 0 means rejected or disabled."""
        media = self.audio
        if media is None:
            return None
        address = self.connection_for(media)
        if address is None:
            return None
        # Drop a multicast "/ttl" or "/count" suffix (RFC 8866 section 5.7).
        return address.split("/", 1)[0], media.port

    @property
    def telephone_event_pt(self) -> int | None:
        media = self.audio
        event = media.telephone_event if media is not None else None
        return event.payload_type if event is not None else None

    @property
    def audio_direction(self) -> str | None:
        """Effective direction of the ``audio`` stream (legacy hold included)."""
        media = self.audio
        return self.effective_direction(media) if media is not None else None

    @property
    def on_hold(self) -> bool:
        """The author holds the call: a=sendonly, a=inactive or c=0.0.0.0 (RFC 6337 section 5.3)."""
        media = self.audio
        if media is None or media.rejected:
            return False
        return self.effective_direction(media) in (SENDONLY, INACTIVE)

    def attribute(self, name: str) -> str | None:
        """First value of a session-level attribute; ``""`` for a flag, ``None`` when absent."""
        return _attribute(self.attributes, name)


@dataclass(frozen=True, slots=True)
class NegotiatedAudio:
    """What the media layer needs once an offer and its answer are known.

    ``codec`` and ``telephone_event`` carry the remote side's payload type numbers: RTP is
    sent with the numbers the receiver declared (RFC 3264 section 6.1). ``direction`` is
    what we may do: send if we offered to send and the peer receives, and so on.
    """

    index: int
    remote_host: str
    remote_port: int
    codec: Codec
    telephone_event: Codec | None
    direction: str
    ptime: int


# --------------------------------------------------------------------------- offer/answer


def make_offer(
    *,
    address: str,
    port: int,
    session_id: int,
    session_version: int = 1,
    codecs: Sequence[Codec] = DEFAULT_CODECS,
    direction: str = SENDRECV,
    ptime: int | None = DEFAULT_PTIME,
) -> SessionDescription:
    """An offer with one audio stream (RFC 3264 section 5), codecs in order of preference."""
    _check_port(port)
    _check_direction(direction)
    audio = _audio_media(port, tuple(codecs), direction, ptime)
    return _session(address, session_id, session_version, (audio,))


def make_answer(
    offer: SessionDescription,
    *,
    address: str,
    port: int,
    session_id: int,
    session_version: int = 1,
    supported: Sequence[Codec] = DEFAULT_CODECS,
    direction: str | None = None,
    ptime: int | None = DEFAULT_PTIME,
) -> SessionDescription:
    """The answer to ``offer`` (RFC 3264 section 6).

    Every offered stream gets a line at the same position. The first audio RTP/AVP stream
    with a voice codec in common is accepted; everything else is rejected with port 0 (we
    have one RTP port, so one stream). ``direction`` is what we would like; the result is
    narrowed by what the offer allows (section 6.1). Raises ``SipParseError`` with
    ``status_hint=488`` when no audio stream can be accepted.
    """
    _check_port(port)
    wanted = direction if direction is not None else SENDRECV
    _check_direction(wanted)
    answered: list[MediaDescription] = []
    accepted = False
    for offered in offer.media:
        media = None if accepted else _answer_audio(offer, offered, port, supported, wanted, ptime)
        accepted = accepted or media is not None
        answered.append(media if media is not None else _rejected(offered))
    if not accepted:
        raise SipParseError("no acceptable audio stream in the offer", status_hint=488)
    return _session(address, session_id, session_version, tuple(answered))


def answer_to(
    offer: bytes | str,
    *,
    address: str,
    port: int,
    session_id: int,
    session_version: int = 1,
    supported: Sequence[Codec] = DEFAULT_CODECS,
    direction: str | None = None,
    ptime: int | None = DEFAULT_PTIME,
) -> bytes:
    """``make_answer(SessionDescription.parse(offer), ...).encode()``: the same bytes and the
    same errors, made cheaply for an offer shaped like one answered before.

    The answer depends on an offer's lines but its origin and the value of its ports (only
    whether a port is zero counts). So the answer to each shape is made once, and later
    offers of that shape get it with their own port and session id and version, once the
    lines that differ (o= and the m= lines) are checked as the parser checks them.
    """
    # Our codecs are the default in nearly every answer; other lists are answered in full
    # (their codecs would have to be hashed and compared on every lookup).
    shape = _offer_shape(offer) if supported is DEFAULT_CODECS and port != 0 else None
    key = (shape, address, direction, ptime)
    template = _ANSWERS.get(key) if shape is not None else None
    if template is None:
        answer = make_answer(
            SessionDescription.parse(offer), address=address, port=port, session_id=session_id,
            session_version=session_version, supported=supported, direction=direction,
            ptime=ptime,
        )  # fmt: skip
        encoded = answer.encode()
        if shape is not None:
            if len(_ANSWERS) >= _MAX_ANSWERS:
                _ANSWERS.clear()
            _ANSWERS[key] = answer
        return encoded
    _check_port(port)
    media = tuple([
        m if m.port == 0 else MediaDescription(
            m.media, port, m.protocol, m.formats, m.codecs, m.direction, m.connection,
            m.attributes, m.port_count, m.raw_formats,
        )
        for m in template.media
    ])  # fmt: skip
    return SessionDescription(
        template.origin_username, session_id, session_version, template.address,
        template.connection, media, template.session_name, template.address_type,
        template.attributes,
    ).encode()  # fmt: skip


# Answers by offer shape (see answer_to), with the port of the offer they were made for.
_ANSWERS: dict[tuple[object, ...], SessionDescription] = {}
_MAX_ANSWERS = 256

OfferShape = tuple[str | tuple[str | int | bool | None, ...], ...]


def _offer_shape(offer: bytes | str) -> OfferShape | None:
    """An offer's lines with its origin left out and each m= line's port reduced to whether
    it is zero; ``None`` when the offer does not parse (let the parser say why)."""
    if not isinstance(offer, bytes | str):
        return None
    try:
        lines = _split_lines(_decode(offer))
        if not lines or lines[0] != "v=0":
            return None
        shape: list[str | tuple[str | int | bool | None, ...]] = []
        origin = False
        in_session = True
        for line in lines:
            kind = line[0]
            if kind == "m":
                in_session = False
                media, port, count, protocol, tokens = _parse_m_line(line[2:])
                shape.append((media, port == 0, count, protocol, *tokens))
            elif kind == "o" and in_session and not origin:
                origin = True  # the session's origin: checked, then left out
                _session_origin([line])
            else:
                shape.append(line)
    except SipParseError:
        return None
    return tuple(shape) if origin else None


def negotiate(local: SessionDescription, remote: SessionDescription) -> NegotiatedAudio | None:
    """The audio stream both sides agreed on, or ``None``.

    Streams of an offer and its answer pair up by position (RFC 3264 section 6). The codec
    is the first of the remote's voice codecs we also listed: the remote lists what it
    prefers to receive first (RFC 3264 section 5.1).
    """
    for index, (mine, theirs) in enumerate(zip(local.media, remote.media, strict=False)):
        if mine.media != "audio" or theirs.media != "audio" or mine.rejected or theirs.rejected:
            continue
        codec = _first_common(theirs.voice_codecs, mine.voice_codecs)
        host = remote.connection_for(theirs)
        if codec is None or host is None:
            continue
        events = [c for c in theirs.codecs if c.is_telephone_event]
        event = _first_common([e for e in events if e.clock_rate == codec.clock_rate], mine.codecs)
        return NegotiatedAudio(
            index=index,
            remote_host=host.split("/", 1)[0],
            remote_port=theirs.port,
            codec=codec,
            telephone_event=event,
            direction=_combine(local.effective_direction(mine), remote.effective_direction(theirs)),
            ptime=theirs.ptime,
        )
    return None


def negotiated_codec(local: SessionDescription, remote: SessionDescription) -> Codec | None:
    """First common voice codec (never telephone-event), with the remote's payload type."""
    result = negotiate(local, remote)
    return result.codec if result is not None else None


def with_direction(sdp: SessionDescription, direction: str) -> SessionDescription:
    """The same description with every active stream set to ``direction``.

    Hold is ``sendonly`` (or ``inactive`` if we also stop listening), resume is ``sendrecv``
    (RFC 6337 section 5.3). Rejected streams stay as they are. The version is not touched:
    pair with ``bump_version`` for a re-offer.
    """
    _check_direction(direction)
    media = tuple(m if m.rejected else replace(m, direction=direction) for m in sdp.media)
    return replace(sdp, media=media)


def bump_version(sdp: SessionDescription) -> SessionDescription:
    """``session_version`` + 1, as a changed re-offer needs (RFC 3264 section 8)."""
    return replace(sdp, session_version=sdp.session_version + 1)


def under_origin(theirs: bytes, ours: bytes) -> bytes:
    """The description ``theirs`` re-offered under the origin of ``ours``, one version up.

    Third-party call control (RFC 3725) hands one party's SDP to another that already saw
    ``ours``: a re-offer in the same session keeps the origin and raises its version
    (RFC 3264 section 8). ``SipParseError`` when either is not SDP.
    """
    username, session_id, session_version, _type, address = _origin_of(ours)
    parsed = SessionDescription.parse(theirs)
    return SessionDescription(
        username, session_id, session_version + 1, address, parsed.connection, parsed.media,
        parsed.session_name, parsed.address_type, parsed.attributes,
    ).encode()  # fmt: skip


def _origin_of(data: bytes) -> tuple[str, int, int, str, str]:
    """The ``o=`` fields of a description (checked as :func:`_parse` would; the rest is not
    read): a re-offer needs only our origin, which we wrote ourselves."""
    if isinstance(data, bytes | str):
        text = _decode(data)
        if text.startswith("v=0\r\no=") or text.startswith("v=0\no="):
            start = text.index("o=") + 2
            end = text.find("\n", start)
            line = text[start : end if end >= 0 else len(text)].removesuffix("\r")
            if "\r" not in line and "\0" not in line:
                return _session_origin(["o=" + line])
    return _origin_from(SessionDescription.parse(data))


def _origin_from(sdp: SessionDescription) -> tuple[str, int, int, str, str]:
    return (sdp.origin_username, sdp.session_id, sdp.session_version, sdp.address_type,
            sdp.address)  # fmt: skip


@lru_cache(maxsize=256)  # the same few lists in every description
def parse_events(fmtp: str | None) -> frozenset[int]:
    """The event codes of a telephone-event ``fmtp`` (``"0-15,66,70"``, RFC 4733 section 2.4.1).

    A missing or unreadable list means the default 0-15: DTMF is what everyone supports.
    """
    if fmtp is None:
        return DEFAULT_EVENTS
    text = fmtp.strip()
    text = text[len("events=") :] if text.lower().startswith("events=") else text
    events: set[int] = set()
    for part in text.split(","):
        match = _EVENT_RANGE.fullmatch(part.strip())
        if match is None:
            return DEFAULT_EVENTS
        low = int(match.group(1))
        high = int(match.group(2)) if match.group(2) is not None else low
        if low > high or high > _MAX_EVENT:
            return DEFAULT_EVENTS
        events.update(range(low, high + 1))
    return frozenset(events)


def format_events(events: Iterable[int]) -> str:
    """``{0, 1, ..., 16, 66}`` → ``"0-16,66"``."""
    parts: list[str] = []
    ordered = sorted(set(events))
    start = 0
    for i, code in enumerate(ordered):
        if i + 1 < len(ordered) and ordered[i + 1] == code + 1:
            continue
        first = ordered[start]
        parts.append(str(first) if first == code else f"{first}-{code}")
        start = i + 1
    return ",".join(parts)


_format_event_set = lru_cache(maxsize=256)(format_events)


def _session(
    address: str, session_id: int, session_version: int, media: tuple[MediaDescription, ...]
) -> SessionDescription:
    # Origin username "-": we have no user id to disclose (RFC 8866 section 5.2).
    return SessionDescription(
        origin_username="-",
        session_id=session_id,
        session_version=session_version,
        address=address,
        connection=address,
        media=media,
        address_type=_address_type(address, "IP4"),
    )


def _audio_media(
    port: int,
    codecs: tuple[Codec, ...],
    direction: str,
    ptime: int | None,
    protocol: str = "RTP/AVP",
) -> MediaDescription:
    attributes: Attributes = (("ptime", str(ptime)),) if ptime is not None else ()
    return MediaDescription(
        "audio", port, protocol, _payload_numbers(codecs), codecs, direction, None, attributes
    )


@lru_cache(maxsize=256)  # the same few codec lists in every offer and answer
def _payload_numbers(codecs: tuple[Codec, ...]) -> tuple[int, ...]:
    numbers = tuple([c.payload_type for c in codecs])
    if len(set(numbers)) != len(numbers) or not all(0 <= pt <= 127 for pt in numbers):
        raise ValueError(f"payload types must be distinct and in 0-127: {list(numbers)}")
    return numbers


def _answer_audio(
    offer: SessionDescription,
    offered: MediaDescription,
    port: int,
    supported: Sequence[Codec],
    wanted: str,
    ptime: int | None,
) -> MediaDescription | None:
    """Our line for an offered stream we can take, or ``None`` to reject it."""
    # Plain RTP/AVP only: SAVP needs SRTP keys we do not have, AVPF feedback we do not do.
    if offered.media != "audio" or offered.rejected or offered.protocol.upper() != "RTP/AVP":
        return None
    codecs = _answer_codecs(offered.codecs, supported)
    if not codecs:
        return None
    direction = _answer_direction(offer.effective_direction(offered), wanted)
    return _audio_media(port, codecs, direction, ptime, offered.protocol)


def _answer_codecs(offered: Sequence[Codec], supported: Sequence[Codec]) -> tuple[Codec, ...]:
    if isinstance(offered, tuple) and isinstance(supported, tuple):
        return _answer_codecs_of(offered, supported)  # the usual case: remembered
    return _answer_codecs_of.__wrapped__(offered, supported)


@lru_cache(maxsize=256)
def _answer_codecs_of(offered: Sequence[Codec], supported: Sequence[Codec]) -> tuple[Codec, ...]:
    """The offered formats we support, in the offerer's order and with its numbers.

    RFC 3264 section 6.1: the answer should use the offer's payload type numbers. fmtp comes
    from our side (it describes what we can receive), except the telephone-event list,
    which is the events both sides know. Events are only kept beside a voice codec of the
    same clock rate (RFC 4733 section 2.1); a stream of events alone is no call.
    """
    chosen: list[Codec] = []
    for codec in offered:
        ours = next((s for s in supported if s.same_format(codec)), None)
        if ours is None or any(c.same_format(codec) for c in chosen):
            continue
        if codec.is_telephone_event:
            events = parse_events(codec.fmtp) & parse_events(ours.fmtp)
            if events:
                chosen.append(codec.with_fmtp(_format_event_set(events)))
        else:
            chosen.append(codec.with_fmtp(ours.fmtp))
    rates = {c.clock_rate for c in chosen if not c.is_telephone_event}
    return tuple(c for c in chosen if c.clock_rate in rates)


def _answer_direction(offered: str, wanted: str) -> str:
    """RFC 3264 section 6.1: we may send only if the offerer receives, and vice versa."""
    offer_send, offer_recv = _DIRECTION_BITS[offered]
    want_send, want_recv = _DIRECTION_BITS[wanted]
    return _BITS_DIRECTION[(want_send and offer_recv, want_recv and offer_send)]


def _combine(local: str, remote: str) -> str:
    """What we may do given both sides' directions (RFC 3264 section 6.1)."""
    local_send, local_recv = _DIRECTION_BITS[local]
    remote_send, remote_recv = _DIRECTION_BITS[remote]
    return _BITS_DIRECTION[(local_send and remote_recv, local_recv and remote_send)]


def _rejected(offered: MediaDescription) -> MediaDescription:
    """RFC 3264 section 6: port zero; the formats are ignored but one must be there."""
    return MediaDescription(
        media=offered.media,
        port=0,
        protocol=offered.protocol,
        formats=offered.formats,
        codecs=offered.codecs,
        direction=INACTIVE,
        raw_formats=offered.raw_formats,
    )


def _first_common(preferred: Sequence[Codec], other: Sequence[Codec]) -> Codec | None:
    return next((c for c in preferred if any(c.same_format(o) for o in other)), None)


def _check_port(port: int) -> None:
    if not 0 <= port <= 65535:
        raise ValueError(f"port out of range: {port}")


def _check_direction(direction: str) -> None:
    if direction not in DIRECTIONS:
        raise ValueError(f"not an SDP direction: {direction!r}")


# --------------------------------------------------------------------------- serialising


def _media_lines(media: MediaDescription, default_type: str) -> list[str]:
    port = str(media.port) if media.port_count is None else f"{media.port}/{media.port_count}"
    tokens = [str(pt) for pt in media.formats] if media.is_rtp else list(media.raw_formats)
    lines = [" ".join(["m=" + media.media, port, media.protocol, *tokens])]
    if media.connection is not None:
        lines.append(_connection_line(media.connection, default_type))
    lines.extend(_stream_lines(media.codecs, media.attributes, media.direction))
    return lines


@lru_cache(maxsize=1024)  # every answer to the same offer says the same after its c= line
def _stream_lines(
    codecs: tuple[Codec, ...], attributes: Attributes, direction: str
) -> tuple[str, ...]:
    lines = []
    for codec in codecs:
        # rtpmap even for static types: RFC 8866 section 6.6 allows it and some peers want it.
        lines.append(f"a=rtpmap:{codec.rtpmap()}")
        if codec.fmtp is not None:
            lines.append(f"a=fmtp:{codec.payload_type} {codec.fmtp}")
    lines.extend(_attribute_line(name, value) for name, value in attributes)
    lines.append(f"a={direction}")
    return tuple(lines)


def _connection_line(address: str, default_type: str) -> str:
    return f"c={_NETTYPE} {_address_type(address, default_type)} {address}"


def _attribute_line(name: str, value: str | None) -> str:
    return f"a={name}" if value is None else f"a={name}:{value}"


@lru_cache(maxsize=1024)  # the same few addresses in every description
def _address_type(address: str, default: str) -> str:
    """IP6 for an IPv6 literal, IP4 for an IPv4 literal, ``default`` for a host name."""
    host = address.split("/", 1)[0]
    if ":" in host:
        return "IP6"
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        return default
    return "IP4"


# --------------------------------------------------------------------------- parsing


def _parse(data: bytes | str) -> SessionDescription:
    if not isinstance(data, bytes | str):
        raise SipParseError(f"SDP must be bytes or str, not {type(data).__name__}")
    lines = _split_lines(_decode(data))
    if not lines or lines[0] != "v=0":
        raise SipParseError("SDP must start with v=0")
    # Where the m= sections start; a second v= is no SDP.
    marks = [i for i in range(1, len(lines)) if lines[i][0] in "mv"]
    if any(lines[i][0] == "v" for i in marks):
        raise SipParseError("second v= line in SDP")
    bounds = [*marks, len(lines)]
    session = lines[1 : bounds[0]]
    username, session_id, session_version, address_type, address = _session_origin(session)
    # Apart from the origin and the ports, descriptions repeat from one call to the next
    # (the same peer offers the same codecs): the rest is read once per spelling.
    connection, session_name, attributes, direction = _session_rest(
        tuple([line for line in session if line[0] != "o"])
    )
    media = tuple([
        _parse_media(lines[start], tuple(lines[start + 1 : end]), direction)
        for start, end in zip(bounds, bounds[1:], strict=False)
    ])  # fmt: skip
    for stream in media:
        # Every active stream needs a c= line, its own or the session's (section 5.7).
        if stream.port != 0 and stream.connection is None and connection is None:
            raise SipParseError(f"no c= line for the {stream.media} stream")
    return SessionDescription(
        username, session_id, session_version, address, connection, media, session_name,
        address_type, attributes,
    )  # fmt: skip


@lru_cache(maxsize=1024)
def _session_rest(raw: tuple[str, ...]) -> tuple[str | None, str, Attributes, str | None]:
    """The session-level lines but the origin: ``c=`` address, name, attributes, direction."""
    lines = _pairs(raw)
    connection = _connection(lines)
    session_attrs = [_parse_attribute(value) for kind, value in lines if kind == "a"]
    direction = next((n.lower() for n, _ in session_attrs if n.lower() in DIRECTIONS), None)
    attributes = tuple((n, v) for n, v in session_attrs if n.lower() not in DIRECTIONS)
    return connection, _session_name(lines), attributes, direction


def _session_name(session: Sequence[tuple[str, str]]) -> str:
    # s= is mandatory (section 5.3) but some old phones leave it out; it means nothing to us.
    value = _first(session, "s")
    return value if value is not None else "-"


def _decode(data: bytes | str) -> str:
    if isinstance(data, str):
        return data
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        # RFC 8866 section 5 lets a=charset change the encoding of text fields; Latin-1
        # reads any byte, and the fields we interpret are ASCII anyway.
        return data.decode("latin-1")


def _split_lines(text: str) -> list[str]:
    """The ``type=value`` lines, checked. CRLF per RFC 8866 section 5, bare LF tolerated
    (section 5 too); blank lines are skipped."""
    body = text.replace("\r\n", "\n")
    if "\r" in body or "\0" in body:
        return _split_lines_checked(text)
    raw = body.split("\n")
    if raw[-1] == "":
        raw.pop()  # the line end of the last line
    types = _LINE_TYPES
    lines = [line for line in raw if len(line) > 1 and line[1] == "=" and line[0] in types]
    if len(lines) != len(raw):  # blank lines (skipped), or something to complain of
        for line in raw:
            if line.strip(" \t") and not (len(line) > 1 and line[1] == "=" and line[0] in types):
                return _split_lines_checked(text)  # it says what is wrong
    return lines


def _pairs(lines: Iterable[str]) -> list[tuple[str, str]]:
    """``("a", "ptime:20")`` for ``a=ptime:20``: lines as :func:`_split_lines` gives them."""
    return [(line[0], line[2:]) for line in lines]


def _split_lines_checked(text: str) -> list[str]:
    """:func:`_split_lines` line by line, for a description with something to complain of."""
    lines: list[str] = []
    for raw in text.split("\n"):
        line = raw[:-1] if raw.endswith("\r") else raw
        if not line.strip(" \t"):
            continue  # blank lines, e.g. the trailing CRLF of a body
        if "\r" in line or "\0" in line:
            raise SipParseError(f"stray CR or NUL in SDP line {line!r}")
        kind = line[0]
        if len(line) < 2 or line[1] != "=" or not ("a" <= kind <= "z"):
            raise SipParseError(f"not an SDP line: {line!r}")
        if kind not in _LINE_TYPES:
            raise SipParseError(f"unknown SDP line type {kind!r}", status_hint=488)
        lines.append(line)
    return lines


def _first(lines: Sequence[tuple[str, str]], kind: str) -> str | None:
    for k, value in lines:
        if k == kind:
            return value
    return None


def _fields(value: str) -> list[str]:
    if "\t" in value or "  " in value:
        stripped = value.strip(" \t")
        return _FIELD_SEP.split(stripped) if stripped else []
    stripped = value.strip(" ")  # single spaces only: str.split says the same, faster
    return stripped.split(" ") if stripped else []


def _number(text: str, what: str) -> int:
    if not (0 < len(text) <= 64 and text.isascii() and text.isdigit()):
        raise SipParseError(f"bad {what} in SDP: {text!r}")
    return int(text)


def _session_origin(session: list[str]) -> tuple[str, int, int, str, str]:
    """``o=<username> <sess-id> <sess-version> <nettype> <addrtype> <address>`` (section 5.2)."""
    value = next((line[2:] for line in session if line[0] == "o"), None)
    if value is None:
        raise SipParseError("SDP without o= line")
    fields = _fields(value)
    if len(fields) != 6:
        raise SipParseError(f"bad o= line: {value!r}")
    username, sess_id, sess_version, nettype, addrtype, address = fields
    _check_network(nettype, addrtype)
    return (
        username,
        _number(sess_id, "session id"),
        _number(sess_version, "session version"),
        addrtype,
        address,
    )


def _connection(lines: Sequence[tuple[str, str]]) -> str | None:
    """The first ``c=`` address; later ones (multicast layers) are checked, not kept."""
    addresses = [_parse_connection(value) for kind, value in lines if kind == "c"]
    return addresses[0] if addresses else None


def _parse_connection(value: str) -> str:
    """``c=<nettype> <addrtype> <connection-address>`` (section 5.7); the address is kept."""
    fields = _fields(value)
    if len(fields) != 3:
        raise SipParseError(f"bad c= line: {value!r}")
    _check_network(fields[0], fields[1])
    return fields[2]


def _check_network(nettype: str, addrtype: str) -> None:
    # Other network and address types exist (ATM, E.164 ...); we can use none of them.
    if nettype != _NETTYPE or addrtype not in _ADDRTYPES:
        raise SipParseError(f"unsupported address {nettype} {addrtype}", status_hint=488)


# Descriptions repeat the same lines (a=rtpmap:0 PCMU/8000, a=ptime:20 ...): the pure
# parsers of single lines remember their answers. An error is not remembered: it is raised
# again each time.
@lru_cache(maxsize=4096)
def _parse_attribute(value: str) -> tuple[str, str | None]:
    """``a=<name>`` or ``a=<name>:<value>`` (section 5.13)."""
    name, colon, rest = value.partition(":")
    name = name.strip(" \t")
    if _TOKEN.fullmatch(name) is None:
        raise SipParseError(f"bad attribute name in a={value!r}")
    return name, rest.strip(" \t") if colon else None


def _parse_media(
    m_line: str, rest: tuple[str, ...], session_direction: str | None
) -> MediaDescription:
    media, port, port_count, protocol, tokens = _parse_m_line(m_line[2:])
    formats, codecs, direction, connection, attributes, raw_formats = _media_rest(
        protocol, tuple(tokens), rest, session_direction
    )
    return MediaDescription(
        media, port, protocol, formats, codecs, direction, connection, attributes, port_count,
        raw_formats,
    )  # fmt: skip


@lru_cache(maxsize=1024)
def _media_rest(
    protocol: str,
    tokens: tuple[str, ...],
    raw: tuple[str, ...],
    session_direction: str | None,
) -> tuple[tuple[int, ...], tuple[Codec, ...], str, str | None, Attributes, tuple[str, ...]]:
    """What an m= section says besides its media and port: formats, codecs, direction,
    ``c=`` address, other attributes, raw formats (the fields of ``MediaDescription``)."""
    lines = _pairs(raw)
    connection = _connection(lines)
    attributes = [_parse_attribute(value) for kind, value in lines if kind == "a"]
    direction = next((n.lower() for n, _ in attributes if n.lower() in DIRECTIONS), None)
    attributes = [(n, v) for n, v in attributes if n.lower() not in DIRECTIONS]
    formats: tuple[int, ...] = ()
    codecs: tuple[Codec, ...] = ()
    raw_formats = tokens
    if _is_rtp(protocol):
        formats = _payload_types(tokens)
        codecs, attributes = _codecs(formats, attributes)
        raw_formats = ()
    return (
        formats, codecs, direction or session_direction or SENDRECV, connection,
        tuple(attributes), raw_formats,
    )  # fmt: skip


def _parse_m_line(value: str) -> tuple[str, int, int | None, str, list[str]]:
    """``m=<media> <port>[/<number of ports>] <proto> <fmt> ...`` (section 5.14)."""
    fields = _fields(value)
    if len(fields) < 3:
        raise SipParseError(f"bad m= line: {value!r}")
    media, port_text, protocol, *tokens = fields
    if not _media_and_proto_valid(media, protocol):
        raise SipParseError(f"bad m= line: {value!r}")
    count: int | None = None
    if len(port_text) <= 5 and port_text.isascii() and port_text.isdigit():
        port = int(port_text)  # the usual port alone, without a regular expression
    else:
        port_match = _PORT.fullmatch(port_text)
        if not port_match:
            raise SipParseError(f"bad m= line: {value!r}")
        port = int(port_match.group(1))
        count = int(port_match.group(2)) if port_match.group(2) is not None else None
    if port > 65535 or count == 0:
        raise SipParseError(f"bad port in m= line: {value!r}")
    # The grammar wants at least one format; a disabled stream without one is harmless.
    if not tokens and port != 0:
        raise SipParseError(f"m= line without formats: {value!r}")
    return media, port, count, protocol, tokens


@lru_cache(maxsize=256)  # "audio" and "RTP/AVP" in nearly every description
def _media_and_proto_valid(media: str, protocol: str) -> bool:
    return _TOKEN.fullmatch(media) is not None and _PROTO.fullmatch(protocol) is not None


@lru_cache(maxsize=1024)  # "0 8 101" on every line of every call
def _payload_types(tokens: tuple[str, ...]) -> tuple[int, ...]:
    return tuple([_payload_type(token) for token in tokens])


def _payload_type(token: str) -> int:
    value = _number(token, "payload type") if len(token) <= 3 else 128
    if value > 127:
        raise SipParseError(f"bad RTP payload type {token!r}")
    return value


def _is_rtp(protocol: str) -> bool:
    """RTP/AVP, RTP/SAVPF, UDP/TLS/RTP/SAVPF ...: formats are payload types (section 5.14)."""
    return "RTP" in protocol.upper().split("/")


def _codecs(
    formats: tuple[int, ...], attributes: list[tuple[str, str | None]]
) -> tuple[tuple[Codec, ...], list[tuple[str, str | None]]]:
    """Codecs for the payload types of an RTP stream, and the attributes left over.

    rtpmap and fmtp lines for payload types not on the m= line are ignored (section 6.6).
    A dynamic payload type without rtpmap is unknown and gets no codec.
    """
    rtpmaps: dict[int, Codec] = {}
    fmtps: dict[int, str | None] = {}
    rest: list[tuple[str, str | None]] = []
    for name, value in attributes:
        lname = name.lower()
        if lname == "rtpmap":
            codec = _parse_rtpmap(value or "")
            rtpmaps.setdefault(codec.payload_type, codec)
        elif lname == "fmtp":
            pt, params = _parse_fmtp(value or "")
            fmtps.setdefault(pt, params)
        else:
            rest.append((name, value))
    codecs: list[Codec] = []
    for pt in dict.fromkeys(formats):
        known = rtpmaps.get(pt) or _static_codec(pt)
        if known is not None:
            codecs.append(known.with_fmtp(fmtps.get(pt)))
    return tuple(codecs), rest


def _static_codec(payload_type: int) -> Codec | None:
    known = STATIC_PAYLOAD_TYPES.get(payload_type)
    return Codec(payload_type, *known) if known is not None else None


@lru_cache(maxsize=1024)
def _parse_rtpmap(value: str) -> Codec:
    """``<payload type> <encoding name>/<clock rate>[/<encoding parameters>]`` (section 6.6)."""
    match = _RTPMAP.fullmatch(value.strip(" \t"))
    if match is None:
        raise SipParseError(f"bad a=rtpmap:{value}")
    pt, name, rate, channels = match.groups()
    codec = Codec(
        payload_type=int(pt),
        name=name,
        clock_rate=int(rate),
        channels=int(channels) if channels is not None else 1,
    )
    if codec.payload_type > 127 or codec.clock_rate == 0 or codec.channels == 0:
        raise SipParseError(f"bad a=rtpmap:{value}")
    return codec


@lru_cache(maxsize=1024)
def _parse_fmtp(value: str) -> tuple[int, str | None]:
    """``<format> <format specific parameters>`` (section 6.15); empty parameters read as none."""
    match = _FMTP.fullmatch(value.strip(" \t"))
    if match is None:
        raise SipParseError(f"bad a=fmtp:{value}")
    params = (match.group(2) or "").strip(" \t")
    return int(match.group(1)), params or None


def _attribute(attributes: Attributes, name: str) -> str | None:
    lname = name.lower()
    for key, value in attributes:
        if key.lower() == lname:
            return value if value is not None else ""
    return None


@lru_cache(maxsize=1024)
def _is_unspecified(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.split("/", 1)[0]).is_unspecified
    except ValueError:
        return False
