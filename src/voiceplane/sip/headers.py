"""Structured SIP header values (RFC 3261 section 20 and 25).

The message keeps header values as text; these helpers give them structure only when a
layer needs it, so a proxy-like pass-through never pays for parsing what it does not read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

from .errors import SipParseError
from .uri import join_hostport, split_hostport

Params = tuple[tuple[str, str | None], ...]

BRANCH_COOKIE = "z9hG4bK"  # RFC 3261 section 8.1.1.7: marks an RFC 3261 branch


def split_commas(value: str) -> list[str]:
    """Split a comma-separated header value, ignoring commas in quotes and angle brackets."""
    if "," not in value:
        return [value.strip()] if value.strip() else []
    parts: list[str] = []
    depth_angle = 0
    in_quote = False
    start = 0
    i = 0
    while i < len(value):
        c = value[i]
        if in_quote:
            if c == "\\":
                i += 1
            elif c == '"':
                in_quote = False
        elif c == '"':
            in_quote = True
        elif c == "<":
            depth_angle += 1
        elif c == ">":
            depth_angle = max(0, depth_angle - 1)
        elif c == "," and depth_angle == 0:
            parts.append(value[start:i].strip())
            start = i + 1
        i += 1
    parts.append(value[start:].strip())
    return [p for p in parts if p]


def parse_params(text: str) -> Params:
    """``;a=1;b;c="x;y"`` → ``(("a", "1"), ("b", None), ("c", '"x;y"'))``."""
    params: list[tuple[str, str | None]] = []
    for raw in _split_semicolons(text):
        raw = raw.strip()
        if not raw:
            continue
        name, eq, value = raw.partition("=")
        name = name.strip()
        if not name:
            raise SipParseError(f"empty parameter name in {text!r}")
        params.append((name.lower(), value.strip() if eq else None))
    return tuple(params)


def _split_semicolons(text: str) -> list[str]:
    if '"' not in text:
        return text.split(";")
    out: list[str] = []
    in_quote = False
    start = 0
    for i, c in enumerate(text):
        if c == '"' and (i == 0 or text[i - 1] != "\\"):
            in_quote = not in_quote
        elif c == ";" and not in_quote:
            out.append(text[start:i])
            start = i + 1
    out.append(text[start:])
    return out


def format_params(params: Params) -> str:
    return "".join(f";{n}" if v is None else f";{n}={v}" for n, v in params)


def get_param(params: Params, name: str) -> str | None:
    for key, value in params:
        if key == name:
            return value if value is not None else ""
    return None


def with_param(params: Params, name: str, value: str | None) -> Params:
    kept = tuple((k, v) for k, v in params if k != name)
    return (*kept, (name, value))


@dataclass(frozen=True, slots=True)
class Via:
    """One Via value: ``SIP/2.0/UDP host:port;branch=...;rport``."""

    transport: str
    host: str
    port: int | None = None
    params: Params = field(default=())

    @classmethod
    def parse(cls, text: str) -> Via:
        proto, _, rest = text.strip().partition(" ")
        transport = _via_transport(proto)
        if transport is None:
            raise SipParseError(f"bad Via protocol: {text!r}")
        sent_by, _, param_text = rest.strip().partition(";")
        host, port = split_hostport(sent_by)
        return cls(transport, host, port, parse_params(param_text))

    @property
    def branch(self) -> str | None:
        return get_param(self.params, "branch")

    @property
    def rport(self) -> str | None:
        return get_param(self.params, "rport")

    def __str__(self) -> str:
        return (
            f"SIP/2.0/{self.transport} {join_hostport(self.host, self.port)}"
            f"{format_params(self.params)}"
        )


@lru_cache(maxsize=64)  # "SIP/2.0/UDP" and a few others, in every Via
def _via_transport(proto: str) -> str | None:
    """``UDP`` for ``SIP/2.0/UDP``; ``None`` when it is not a Via's sent-protocol."""
    pieces = proto.split("/")
    if len(pieces) != 3 or pieces[0].upper() != "SIP" or not pieces[2]:
        return None
    return pieces[2].upper()


@dataclass(frozen=True, slots=True)
class NameAddr:
    """A From, To, Contact, Route or Record-Route value.

    ``uri`` stays text (parse it with ``SipUri.parse`` when routing needs it); ``params``
    are the header parameters such as ``tag``, never the URI's own.
    """

    uri: str
    display: str | None = None
    params: Params = field(default=())
    bracketed: bool = True

    @classmethod
    def parse(cls, text: str) -> NameAddr:
        text = text.strip()
        if not text:
            raise SipParseError("empty address")
        display: str | None = None
        # A quoted display name may itself hold '<' ("Reception <100>" <sip:100@pbx>).
        start = _quoted_end(text) if text[0] == '"' else 0
        lt = text.find("<", start)
        # A '<' after a ';' is in a parameter of an addr-spec (sip:a@b;x="<"), no bracket.
        if lt >= 0 and text.find(";", start, lt) < 0:
            head = text[:lt].strip()
            gt = text.find(">", lt)
            if gt < 0:
                raise SipParseError(f"unterminated <uri> in {text!r}")
            if head:
                display = head
            uri = text[lt + 1 : gt].strip()
            tail = text[gt + 1 :].strip()
            if tail and not tail.startswith(";"):
                raise SipParseError(f"junk after <uri> in {text!r}")
            bracketed = True
        else:
            # addr-spec without brackets: every ';' belongs to the header (RFC 3261 20.10)
            uri, _, rest = text.partition(";")
            uri = uri.strip()
            tail = ";" + rest if rest else ""
            bracketed = False
        if ":" not in uri or " " in uri:
            raise SipParseError(f"bad URI in address {text!r}")
        return cls(uri, display, parse_params(tail.lstrip(";")), bracketed)

    @property
    def tag(self) -> str | None:
        return get_param(self.params, "tag")

    def with_tag(self, tag: str) -> NameAddr:
        return NameAddr(self.uri, self.display, with_param(self.params, "tag", tag), True)

    def __str__(self) -> str:
        head = f"{self.display} " if self.display else ""
        return f"{head}<{self.uri}>{format_params(self.params)}"


def _quoted_end(text: str) -> int:
    """The index just after the quoted-string ``text`` starts with (backslash escapes kept)."""
    i = 1
    while i < len(text):
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == '"':
            return i + 1
        i += 1
    raise SipParseError(f"unterminated quoted string in {text!r}")


def tag_of(value: str) -> str | None:
    """The ``tag`` parameter of a From or To value, without parsing the whole address.

    It agrees with ``NameAddr.parse(value).tag`` on every well-formed value (a test says so).
    """
    gt = value.rfind(">")
    tail = value[gt + 1 :] if gt >= 0 else value
    if '"' in tail:
        # A quoted parameter value may hold ">" or ";tag=" itself (x="a>b;tag=c"): only
        # the full parse knows which ">" closes the URI and which ";tag=" is a parameter.
        return NameAddr.parse(value).tag
    low = tail.lower()
    at = low.find(";tag=")
    if at < 0 or (at and "tag" in low[:at]):
        if "tag" not in low:
            return None
        # Unusual spacing, or a "tag" before this one (";tag;tag=x", ";xtag=1"):
        # take the slow, exact path.
        return NameAddr.parse(value).tag
    end = tail.find(";", at + 5)
    return tail[at + 5 : end if end >= 0 else len(tail)].strip()


def without_tag(value: str) -> str:
    """A From or To value with its ``tag`` parameter removed."""
    gt = value.rfind(">")
    # Not with a quote after the ">": a quoted parameter may hold ";" or ";tag=" itself.
    if gt >= 0 and ";tag=" in value[gt:].lower() and " " not in value[gt:] \
            and '"' not in value[gt:]:  # fmt: skip
        tail = value[gt + 1 :]
        kept = [p for p in tail.split(";") if p and p.partition("=")[0].lower() != "tag"]
        return value[: gt + 1] + "".join(";" + p for p in kept)
    return _rewritten_without_tag(value)


@lru_cache(maxsize=4096)  # a To without a tag yet: the same few numbers dialled again and again
def _rewritten_without_tag(value: str) -> str:
    addr = NameAddr.parse(value)
    params = tuple((k, v) for k, v in addr.params if k != "tag")
    return str(NameAddr(addr.uri, addr.display, params))


@dataclass(frozen=True, slots=True)
class CSeq:
    number: int
    method: str

    @classmethod
    def parse(cls, text: str) -> CSeq:
        num, _, method = text.strip().partition(" ")
        method = method.strip()
        if not (num.isascii() and num.isdigit()) or not method or len(num) > 10:
            raise SipParseError(f"bad CSeq: {text!r}")
        value = int(num)
        if value >= 2**31:
            raise SipParseError(f"CSeq number out of range: {text!r}")
        return cls(value, method)

    def __str__(self) -> str:
        return f"{self.number} {self.method}"


@dataclass(frozen=True, slots=True)
class Reason:
    """``Reason: Q.850;cause=17;text="User busy"`` (RFC 3326)."""

    protocol: str
    cause: int | None
    text: str | None

    @classmethod
    def parse(cls, value: str) -> Reason:
        proto, _, rest = value.strip().partition(";")
        params = parse_params(rest)
        cause_text = get_param(params, "cause")
        cause: int | None = None
        if cause_text is not None:
            if not (cause_text.isascii() and cause_text.isdigit()) or len(cause_text) > 4:
                raise SipParseError(f"bad Reason cause: {value!r}")
            cause = int(cause_text)
        text = get_param(params, "text")
        if text is not None and len(text) >= 2 and text[0] == '"' == text[-1]:
            text = text[1:-1]
        return cls(proto.strip(), cause, text)


def q850_cause_from_reasons(values: list[str]) -> int | None:
    """The Q.850 cause of the first ``Reason: Q.850`` value, masked to 7 bits as in RFC 3326."""
    for value in values:
        try:
            reason = Reason.parse(value)
        except SipParseError:
            continue
        if reason.protocol.upper() == "Q.850" and reason.cause is not None:
            return reason.cause & 0x7F
    return None
