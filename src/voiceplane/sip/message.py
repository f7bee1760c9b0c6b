"""SIP messages: parsing and serialising (RFC 3261 sections 7, 18.3, 20 and 25).

Header names are stored in their long form, lower case (``v`` and ``Via`` are both
``via``), and written back in the usual capitalisation. Values are kept as text; the
structured views live in ``headers``. Anything that is not a SIP message raises
``SipParseError`` and nothing else.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from .errors import SipParseError
from .headers import CSeq, NameAddr, Via, split_commas, tag_of

SIP_VERSION = "SIP/2.0"

# RFC 3261 section 7.3.3 plus the compact forms registered since (RFC 3265, 3515, 3841, 4028, 4474).
COMPACT_FORMS = {
    "i": "call-id", "m": "contact", "e": "content-encoding", "l": "content-length",
    "c": "content-type", "f": "from", "s": "subject", "k": "supported", "t": "to",
    "v": "via", "o": "event", "r": "refer-to", "u": "allow-events", "x": "session-expires",
    "b": "referred-by", "a": "accept-contact", "j": "reject-contact", "d": "request-disposition",
    "y": "identity", "n": "identity-info",
}  # fmt: skip

_SPECIAL_CASE = {
    "call-id": "Call-ID", "cseq": "CSeq", "www-authenticate": "WWW-Authenticate",
    "mime-version": "MIME-Version", "rack": "RAck", "rseq": "RSeq", "sip-etag": "SIP-ETag",
    "sip-if-match": "SIP-If-Match", "p-asserted-identity": "P-Asserted-Identity",
}  # fmt: skip

# Headers whose values may be joined by commas on one line (RFC 3261 section 7.3.1). The
# authentication headers are not among them: their parameters are separated by commas too.
MULTI_VALUE = frozenset(
    {
        "via", "route", "record-route", "contact", "allow", "supported", "require",
        "proxy-require", "unsupported", "accept", "accept-encoding", "accept-language",
        "content-encoding", "allow-events", "reason", "in-reply-to", "path", "service-route",
    }
)  # fmt: skip

_TOKEN = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")
_MAX_HEAD = 64 * 1024


_CANONICAL: dict[str, str] = dict(_SPECIAL_CASE)


def canonical_name(name: str) -> str:
    """``call-id`` → ``Call-ID``, ``max-forwards`` → ``Max-Forwards``."""
    cached = _CANONICAL.get(name)
    if cached is not None:
        return cached
    result = "-".join(part[:1].upper() + part[1:] for part in name.split("-"))
    if len(_CANONICAL) < 4096:  # bounded: names come from the network
        _CANONICAL[name] = result
    return result


def normalize_name(name: str) -> str:
    lname = name.strip().lower()
    return COMPACT_FORMS.get(lname, lname)


_LOOKUP: dict[str, str] = {}

V = TypeVar("V")


def _lookup_name(name: str) -> str:
    """``Via``, ``v`` and ``via`` all find ``via``; cached, since lookups are on the hot path."""
    found = _LOOKUP.get(name)
    if found is None:
        found = normalize_name(name)
        if len(_LOOKUP) < 4096:
            _LOOKUP[name] = found
    return found


class Headers:
    """An immutable, ordered list of ``(name, value)`` with case-insensitive lookup.

    Parsed views of its values (the top Via, CSeq ...) are kept once made: every layer asks
    for them again, and the headers never change.
    """

    __slots__ = ("_items", "_views", "_first")

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        normalized = []
        for name, value in items:
            if "\r" in value or "\n" in value:
                raise ValueError(f"line break in the value of header {name!r}")
            normalized.append((normalize_name(name), value))
        self._items: tuple[tuple[str, str], ...] = tuple(normalized)
        self._views: dict[Callable[[Headers], Any], Any] | None = None
        self._first: dict[str, str] | None = None  # the first value of each name, once asked

    @classmethod
    def _trusted(cls, items: tuple[tuple[str, str], ...]) -> Headers:
        """Build from names that are already normalised (the parser and the core)."""
        # Through an empty __init__ rather than cls.__new__(cls), which mypyc cannot compile
        # (voiceplane.native).
        obj = cls()
        obj._items = items
        return obj

    def _first_values(self) -> dict[str, str]:
        first = self._first
        if first is None:
            # Reversed, so that the first value of a name is the one that stays.
            first = self._first = dict(reversed(self._items))
        return first

    def view(self, make: Callable[[Headers], V]) -> V:
        """``make(self)``, made once per Headers (an error is raised again each time)."""
        views = self._views
        if views is None:
            views = self._views = {}
        elif make in views:
            found: V = views[make]
            return found
        value = make(self)
        views[make] = value
        return value

    def get(self, name: str) -> str | None:
        """The first value of ``name`` (first element of a comma list for multi-value headers)."""
        key = _LOOKUP.get(name) or _lookup_name(name)
        first = self._first
        value = (first if first is not None else self._first_values()).get(key)
        if value is not None and "," in value and key in MULTI_VALUE:
            parts = split_commas(value)
            return parts[0] if parts else None
        return value

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name`` in order, comma lists split for multi-value headers."""
        out: list[str] = []
        name = _lookup_name(name)
        multi = name in MULTI_VALUE
        for key, value in self._items:
            if key == name:
                if multi and "," in value:
                    out.extend(split_commas(value))
                else:
                    out.append(value)
        return out

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        return _lookup_name(name) in self._first_values()

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Headers) and self._items == other._items

    def __hash__(self) -> int:
        return hash(self._items)

    def __repr__(self) -> str:
        return f"Headers({list(self._items)!r})"

    def add(self, name: str, value: str) -> Headers:
        return Headers._trusted((*self._items, (normalize_name(name), value)))

    def prepend(self, name: str, value: str) -> Headers:
        return Headers._trusted(((normalize_name(name), value), *self._items))

    def remove(self, name: str) -> Headers:
        lname = normalize_name(name)
        return Headers._trusted(tuple(item for item in self._items if item[0] != lname))

    def set(self, name: str, value: str) -> Headers:
        """Replace every value of ``name`` with one, in the place of the first."""
        lname = normalize_name(name)
        out: list[tuple[str, str]] = []
        placed = False
        for item in self._items:
            if item[0] == lname:
                if not placed:
                    out.append((lname, value))
                    placed = True
            else:
                out.append(item)
        if not placed:
            out.append((lname, value))
        return Headers._trusted(tuple(out))

    def with_top_via(self, via: Via) -> Headers | None:
        """These headers with the first Via line holding ``via`` instead, its other views
        kept; None when that line is a comma list of Vias (rewrite those the long way)."""
        items = self._items
        for index, (name, value) in enumerate(items):
            if name == "via":
                if "," in value:
                    return None
                new = Headers._trusted((*items[:index], ("via", str(via)), *items[index + 1 :]))
                views = dict(self._views) if self._views else {}
                views[_top_via] = via
                new._views = views
                return new
        return None

    def encode_lines(self, body_length: int) -> list[str]:
        known = _CANONICAL
        lines = [
            f"{known.get(name) or canonical_name(name)}: {value}"
            for name, value in self._items
            if name != "content-length"
        ]
        lines.append(f"Content-Length: {body_length}")
        return lines


class _MessageViews:
    """Read-only views over the headers every layer needs; shared by requests and responses."""

    __slots__ = ()
    headers: Headers

    @property
    def call_id(self) -> str:
        return self.headers.view(_call_id)

    @property
    def cseq(self) -> CSeq:
        return self.headers.view(_cseq)

    @property
    def top_via(self) -> Via:
        return self.headers.view(_top_via)

    @property
    def from_(self) -> NameAddr:
        return self.headers.view(_from)

    @property
    def to(self) -> NameAddr:
        return self.headers.view(_to)

    @property
    def from_tag(self) -> str | None:
        return self.headers.view(_from_tag)

    @property
    def to_tag(self) -> str | None:
        return self.headers.view(_to_tag)


def _call_id(headers: Headers) -> str:
    return headers.get("call-id") or ""


def _cseq(headers: Headers) -> CSeq:
    return CSeq.parse(headers.get("cseq") or "")


def _top_via(headers: Headers) -> Via:
    value = headers.get("via")
    if value is None:
        raise SipParseError("no Via header")
    return Via.parse(value)


def _from(headers: Headers) -> NameAddr:
    return NameAddr.parse(headers.get("from") or "")


def _to(headers: Headers) -> NameAddr:
    return NameAddr.parse(headers.get("to") or "")


def _from_tag(headers: Headers) -> str | None:
    return tag_of(headers.get("from") or "")


def _to_tag(headers: Headers) -> str | None:
    return tag_of(headers.get("to") or "")


@dataclass(frozen=True, slots=True)
class Request(_MessageViews):
    method: str
    uri: str
    headers: Headers
    body: bytes = b""

    def encode(self) -> bytes:
        lines = [
            f"{self.method} {self.uri} {SIP_VERSION}",
            *self.headers.encode_lines(len(self.body)),
        ]
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + self.body

    def __bytes__(self) -> bytes:
        return self.encode()


@dataclass(frozen=True, slots=True)
class Response(_MessageViews):
    status: int
    reason: str
    headers: Headers
    body: bytes = b""

    def encode(self) -> bytes:
        lines = [
            f"{SIP_VERSION} {self.status} {self.reason}",
            *self.headers.encode_lines(len(self.body)),
        ]
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + self.body

    def __bytes__(self) -> bytes:
        return self.encode()


Message = Request | Response

# Header names as written on the wire (``Via``, ``v``, ``CSeq ``) that passed the token
# check, mapped to their normalised form: most messages only use a dozen of them.
_HEADER_NAMES: dict[str, str] = {}

_REQUIRED_ORDER = ("via", "from", "to", "call-id", "cseq")
_REQUIRED = frozenset(_REQUIRED_ORDER)


def parse_message(data: bytes) -> Message:
    """Parse one whole message (a datagram, or what ``StreamFramer`` cut from a stream).

    A body longer than Content-Length is cut to it; a shorter one is an error
    (RFC 3261 section 18.3).
    """
    head_end, body_start = _blank_line(data)
    if head_end < 0:
        raise SipParseError("no blank line after the headers")
    if head_end > _MAX_HEAD:
        raise SipParseError("headers too large", status_hint=513)
    try:
        head = data[:head_end].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SipParseError(f"headers are not UTF-8: {exc.reason}") from None
    lines = head.replace("\r\n", "\n").split("\n")
    start = lines[0]
    names = _HEADER_NAMES
    parts = [line.partition(":") for line in lines[1:]]
    try:
        # The usual message: every line a header whose name was seen (and checked) before.
        items = [(names[raw], value.strip(" \t")) for raw, colon, value in parts if colon]
    except KeyError:
        items = []
    if len(items) != len(parts):
        items = _header_items(lines)
    headers = Headers._trusted(tuple(items))
    first = headers._first_values()
    if not _REQUIRED <= first.keys():
        missing = next(r for r in _REQUIRED_ORDER if r not in first)
        raise SipParseError(f"missing {canonical_name(missing)} header")
    body = data[body_start:]
    length_text = first.get("content-length")
    if length_text is not None:
        # ASCII digits only: str.isdigit() also takes '²', which int() refuses.
        if not (length_text.isascii() and length_text.isdigit()) or len(length_text) > 9:
            raise SipParseError(f"bad Content-Length: {length_text!r}")
        length = int(length_text)
        if length > len(body):
            raise SipParseError("body shorter than Content-Length")
        body = body[:length]
    cseq = headers.view(_cseq)

    if start.startswith("SIP/"):
        version, _, rest = start.partition(" ")
        code_text, _, reason = rest.partition(" ")
        if version.upper() != SIP_VERSION:
            raise SipParseError(f"unsupported version {version!r}", status_hint=505)
        if (len(code_text) != 3 or not (code_text.isascii() and code_text.isdigit())
                or not 100 <= int(code_text) <= 699):  # fmt: skip
            raise SipParseError(f"bad status code in {start[:80]!r}")
        return Response(int(code_text), reason.strip(), headers, body)

    parts_of_start = start.split(" ")
    if len(parts_of_start) != 3:
        raise SipParseError(f"bad request line: {start[:80]!r}")
    method, uri, version = parts_of_start
    if method not in _METHODS_SEEN and not _TOKEN.fullmatch(method):
        raise SipParseError(f"bad method {method[:40]!r}")
    if version.upper() != SIP_VERSION:
        raise SipParseError(f"unsupported version {version[:40]!r}", status_hint=505)
    if ":" not in uri:
        raise SipParseError(f"bad Request-URI {uri[:80]!r}")
    if cseq.method != method:
        raise SipParseError(f"CSeq method {cseq.method!r} does not match {method!r}")
    if method not in _METHODS_SEEN and len(_METHODS_SEEN) < 64:
        _METHODS_SEEN.add(method)
    return Request(method, uri, headers, body)


def _blank_line(data: bytes | bytearray) -> tuple[int, int]:
    """Where the head ends and the body starts, at the first empty line: ``(-1, -1)``
    while there is none.

    Lines end in CRLF or, as most stacks tolerate, a bare LF, so an empty line is "\n"
    then "\r\n" or "\n"; a blank line in the body comes after it.
    """
    eol = data.find(b"\n\r\n")
    bare = data.find(b"\n\n", 0, eol + 1 if eol >= 0 else len(data))
    if bare >= 0:
        eol, body_start = bare, bare + 2
    elif eol >= 0:
        body_start = eol + 3
    else:
        return -1, -1
    return (eol - 1 if eol and data[eol - 1] == 13 else eol), body_start  # the last CR


# Methods of requests that parsed: their token check is done (bounded: they come from the
# network).
_METHODS_SEEN: set[str] = set()


def _header_items(lines: list[str]) -> list[tuple[str, str]]:
    """The header lines one by one: folded lines, names not seen before, errors."""
    items: list[tuple[str, str]] = []
    names = _HEADER_NAMES
    for line in lines[1:]:
        raw_name, colon, value = line.partition(":")
        known = names.get(raw_name)
        if known is not None and colon:
            # A header name seen (and checked) before: the usual case.
            items.append((known, value.strip(" \t")))
            continue
        if not line:
            raise SipParseError("empty line inside the headers")
        if line[0] in " \t":
            if not items:
                raise SipParseError("continuation line before any header")
            name, value = items[-1]
            items[-1] = (name, f"{value} {line.strip()}".strip())
            continue
        name = raw_name.rstrip(" \t")
        if not colon or not _TOKEN.fullmatch(name):
            raise SipParseError(f"bad header line: {line[:80]!r}")
        lname = name.lower()
        normalized = COMPACT_FORMS.get(lname, lname)
        items.append((normalized, value.strip(" \t")))
        if len(names) < 4096:  # bounded: names come from the network
            names[raw_name] = normalized
    return items


class StreamFramer:
    """Cuts whole messages out of a byte stream by Content-Length (RFC 3261 section 18.3).

    Sans-IO like the rest of the core: ``feed`` bytes as they arrive, then call
    ``next_message`` until it returns ``None``. CRLF keep-alives between messages
    (RFC 5626 section 3.5.1) are skipped.
    """

    def __init__(self, max_message: int = 256 * 1024) -> None:
        self._buffer = bytearray()
        self._max_message = max_message

    def feed(self, data: bytes) -> None:
        self._buffer += data

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def next_message(self) -> bytes | None:
        buf = self._buffer
        skip = 0
        while skip < len(buf) and buf[skip] in b"\r\n":
            skip += 1
        if skip:
            del buf[:skip]
        head_end, body_start = _blank_line(buf)
        if head_end < 0:
            if len(buf) > _MAX_HEAD:
                raise SipParseError("headers too large", status_hint=513)
            return None
        length = _content_length(bytes(buf[:head_end]))
        total = body_start + length
        if total > self._max_message:
            raise SipParseError("message too large", status_hint=513)
        if len(buf) < total:
            return None
        message = bytes(buf[:total])
        del buf[:total]
        return message


def _content_length(head: bytes) -> int:
    for line in head.split(b"\n")[1:]:  # a CR left at a line's end is stripped below
        name, colon, value = line.partition(b":")
        if colon and name.strip().lower() in (b"content-length", b"l"):
            text = value.strip()
            if not text.isdigit() or len(text) > 9:
                raise SipParseError(f"bad Content-Length: {text[:20]!r}")
            return int(text)
    return 0  # a stream message without Content-Length has no body
