"""SIP URIs (RFC 3261 section 19.1): just enough structure to route a request."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache

from .errors import SipParseError

DEFAULT_PORTS = {"sip": 5060, "sips": 5061}
_BAD_HOST_CHARACTER = re.compile(r'[ \t<>"@;?]')


@dataclass(frozen=True, slots=True)
class SipUri:
    """``sip:user@host:port;param=value?header=value``, parsed.

    ``params`` keeps the order and case of the names as given; values may be ``None`` for
    flag parameters such as ``lr``.
    """

    host: str
    user: str | None = None
    password: str | None = None
    port: int | None = None
    scheme: str = "sip"
    params: tuple[tuple[str, str | None], ...] = field(default=())
    headers: str = ""

    @classmethod
    def parse(cls, text: str) -> SipUri:
        scheme, sep, rest = text.strip().partition(":")
        scheme = scheme.lower()
        if not sep or scheme not in DEFAULT_PORTS:
            raise SipParseError(f"not a sip or sips URI: {text!r}")
        rest, _, headers = rest.partition("?")
        # The user part may hold ';' (telephone-subscriber: ";npdi;rn=..."), so cut it off
        # at the last '@' before splitting the parameters.
        userinfo, at, rest = rest.rpartition("@")
        hostpart, *raw_params = rest.split(";")
        user = password = None
        if at:
            user, _, pw = userinfo.partition(":")
            password = pw or None
        host, port = split_hostport(hostpart)
        params: list[tuple[str, str | None]] = []
        for raw in raw_params:
            if not raw:
                continue
            name, eq, value = raw.partition("=")
            params.append((name, value if eq else None))
        return cls(
            host=host,
            user=user,
            password=password,
            port=port,
            scheme=scheme,
            params=tuple(params),
            headers=headers,
        )

    def param(self, name: str) -> str | None:
        lname = name.lower()
        for key, value in self.params:
            if key.lower() == lname:
                return value if value is not None else ""
        return None

    def has_param(self, name: str) -> bool:
        return self.param(name) is not None

    @property
    def effective_port(self) -> int:
        return self.port if self.port is not None else DEFAULT_PORTS[self.scheme]

    @property
    def transport(self) -> str:
        value = self.param("transport")
        return value.lower() if value else "udp"

    def __str__(self) -> str:
        out = [self.scheme, ":"]
        if self.user is not None:
            out.append(self.user)
            if self.password is not None:
                out += [":", self.password]
            out.append("@")
        out.append(join_hostport(self.host, self.port))
        for name, value in self.params:
            out += [";", name] if value is None else [";", name, "=", value]
        if self.headers:
            out += ["?", self.headers]
        return "".join(out)


@lru_cache(maxsize=1024)  # the same few peers in every Via, Contact and URI
def split_hostport(text: str) -> tuple[str, int | None]:
    """Split ``host[:port]``, IPv6 references in brackets included."""
    text = text.strip()
    if not text:
        raise SipParseError("empty host")
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise SipParseError(f"unterminated IPv6 reference: {text!r}")
        host, rest = text[: end + 1], text[end + 1 :]
        if rest and not rest.startswith(":"):
            raise SipParseError(f"junk after IPv6 reference: {text!r}")
        port_text = rest[1:] if rest else ""
    else:
        host, _, port_text = text.partition(":")
        if not host:
            raise SipParseError(f"empty host in {text!r}")
    if _BAD_HOST_CHARACTER.search(host):
        raise SipParseError(f"bad character in host {host!r}")
    if not port_text:
        return host, None
    if not (port_text.isascii() and port_text.isdigit()) or not 0 < int(port_text) < 65536:
        raise SipParseError(f"bad port in {text!r}")
    return host, int(port_text)


def join_hostport(host: str, port: int | None) -> str:
    return host if port is None else f"{host}:{port}"
