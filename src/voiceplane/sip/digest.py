"""SIP digest authentication (RFC 3261 section 22.4, RFC 2617, RFC 7616, RFC 8760).

Sans-IO: every function here is a pure computation over its arguments. Nothing reads a
clock, draws random numbers or keeps state, so the caller supplies the cnonce (client) and
the nonce (server), and keeps track of nonce counts.

Client side::

    challenge = Challenge.parse(response.headers["www-authenticate"])
    value = authorization(challenge, creds, method="INVITE", uri=str(request_uri), cnonce=c)

Server side::

    header = challenge_header(realm="example.com", nonce=n)        # -> 401 WWW-Authenticate
    auth = AuthorizationHeader.parse(request.headers["authorization"])
    ok = verify(auth, password=lookup(auth.username), method=request.method, body=body)

``verify`` checks the response digest only. The caller still has to check what needs state
or context (RFC 2617 section 3.2.2.5, RFC 3261 section 22.4): that ``auth.nonce`` is one it
issued and is still fresh (answer with ``stale=True`` otherwise), that ``auth.nc`` grows,
that ``auth.uri`` matches the Request-URI, and that realm and algorithm are ones it offered.

Errors: the ``parse`` methods raise ``SipParseError`` and nothing else for malformed input.
The builders (``authorization``, ``challenge_header``, ``str()`` of the dataclasses) and
``verify`` raise ``ValueError`` for arguments no valid header could carry.

Text is hashed as UTF-8: SIP is UTF-8 throughout and its quoted-string admits non-ASCII
(RFC 3261 section 25.1), so the RFC 7616 ``username*`` / ``userhash`` escape hatches, which
exist for HTTP's ISO-8859-1 legacy, are neither generated nor understood.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from .errors import SipParseError

__all__ = [
    "ALGORITHMS",
    "QOP_AUTH",
    "QOP_AUTH_INT",
    "AuthorizationHeader",
    "Challenge",
    "Credentials",
    "authorization",
    "challenge_header",
    "verify",
]

QOP_AUTH = "auth"
QOP_AUTH_INT = "auth-int"
_SUPPORTED_QOP = (QOP_AUTH, QOP_AUTH_INT)

_WS = " \t\r\n"  # LWS once unfolded; CR/LF too so a still-folded value parses (RFC 3261 7.3.1)
_TOKEN_CHARS = frozenset(string.ascii_letters + string.digits + "-.!%*_+`'~")  # RFC 3261 25.1
_HEX = frozenset("0123456789abcdef")
_NC_RE = re.compile(r"[0-9a-fA-F]{8}")  # nc-value = 8LHEX (RFC 2617 section 3.2.2)
_MAX_NC = 0xFFFFFFFF


# --- algorithms ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Algorithm:
    name: str  # the spelling registered by RFC 7616 section 6.1, written back on the wire
    hash_name: str  # hashlib's name for H
    session: bool  # the "-sess" variant: A1 also binds nonce and cnonce (RFC 7616 3.4.2)

    def h(self, data: str | bytes) -> str:
        raw = data.encode("utf-8") if isinstance(data, str) else data
        return hashlib.new(self.hash_name, raw).hexdigest()

    @property
    def hex_length(self) -> int:
        return hashlib.new(self.hash_name).digest_size * 2


def _build_algorithms() -> Mapping[str, _Algorithm]:
    # RFC 8760 brings SHA-256 and SHA-512/256 to SIP; MD5 stays for the installed base.
    table: dict[str, _Algorithm] = {}
    for base, hash_name in (("MD5", "md5"), ("SHA-256", "sha256"), ("SHA-512-256", "sha512_256")):
        if hash_name not in hashlib.algorithms_available:
            continue  # SHA-512/256 comes from OpenSSL and may be missing from a build
        for session in (False, True):
            name = f"{base}-sess" if session else base
            table[name.lower()] = _Algorithm(name, hash_name, session)
    return MappingProxyType(table)


_ALGORITHMS = _build_algorithms()
ALGORITHMS: tuple[str, ...] = tuple(a.name for a in _ALGORITHMS.values())


def _find_algorithm(name: str) -> _Algorithm | None:
    # Algorithm names compare case-insensitively (RFC 7616 section 3.3 uses "MD5-sess").
    return _ALGORITHMS.get(name.lower())


def _algorithm_arg(name: str) -> _Algorithm:
    algo = _find_algorithm(name)
    if algo is None:
        raise ValueError(f"unsupported digest algorithm {name!r}; known: {', '.join(ALGORITHMS)}")
    return algo


# --- the digest computation (RFC 2617 section 3.2.2.1, RFC 7616 sections 3.4.1-3.4.3) ------


def _response(
    algo: _Algorithm,
    *,
    username: str,
    realm: str,
    password: str,
    nonce: str,
    uri: str,
    method: str,
    qop: str | None,
    cnonce: str | None,
    nc: int | None,
    body: bytes,
) -> str:
    ha1 = algo.h(f"{username}:{realm}:{password}")
    if algo.session:
        # The "-sess" A1 binds the session to this nonce/cnonce pair (RFC 7616 3.4.2).
        if cnonce is None:
            raise ValueError(f"{algo.name} needs a cnonce, so a qop")
        ha1 = algo.h(f"{ha1}:{nonce}:{cnonce}")
    a2 = f"{method}:{uri}"
    if qop == QOP_AUTH_INT:
        # auth-int also covers the body; SIP hashes the empty string when there is none
        # (RFC 3261 section 22.4, RFC 7616 section 3.4.3).
        a2 = f"{a2}:{algo.h(body)}"
    ha2 = algo.h(a2)
    if qop is None:
        # RFC 2069 compatibility: no qop, no cnonce, no nc (RFC 2617 section 3.2.2.1).
        return algo.h(f"{ha1}:{nonce}:{ha2}")
    if cnonce is None or nc is None:
        raise ValueError("a qop needs both cnonce and nc")
    return algo.h(f"{ha1}:{nonce}:{_format_nc(nc)}:{cnonce}:{qop}:{ha2}")


def _format_nc(nc: int) -> str:
    if not 1 <= nc <= _MAX_NC:
        raise ValueError(f"nonce count out of range: {nc}")
    return f"{nc:08x}"  # 8LHEX (RFC 2617 section 3.2.2)


def _choose_qop(offered: Iterable[str]) -> str | None:
    """The qop to answer with: "auth" when offered, else "auth-int", else none (RFC 2069).

    "auth" wins because auth-int only adds the body, which SIP proxies may legitimately
    rewrite (RFC 3261 section 22.4 leaves the choice to the client).
    """
    tokens = [t.lower() for t in offered]
    if not tokens:
        return None
    for qop in _SUPPORTED_QOP:
        if qop in tokens:
            return qop
    raise ValueError(f"none of the offered qop values is supported: {tokens!r}")


# --- wire syntax -----------------------------------------------------------------------


def _quote(value: str, what: str) -> str:
    """A quoted-string (RFC 3261 section 25.1): escape '"' and '\\' with a backslash.

    CR and LF cannot appear even as a quoted-pair, and the other controls would only invite
    trouble in peers' parsers, so they are refused rather than escaped.
    """
    for c in value:
        if (c < " " and c != "\t") or c == "\x7f":
            raise ValueError(f"control character {c!r} in {what}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"{what} is not encodable as UTF-8") from exc
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _format(params: Iterable[tuple[str, str]]) -> str:
    return "Digest " + ", ".join(f"{name}={value}" for name, value in params)


def _skip(text: str, i: int, chars: str) -> int:
    while i < len(text) and text[i] in chars:
        i += 1
    return i


def _read_token(text: str, i: int, what: str) -> tuple[str, int]:
    start = i
    while i < len(text) and text[i] in _TOKEN_CHARS:
        i += 1
    if i == start:
        raise SipParseError(f"expected a token for {what} at offset {start} in {text!r}")
    return text[start:i], i


def _read_quoted(text: str, i: int) -> tuple[str, int]:
    """Read the quoted-string opening at ``text[i]``; return its unescaped content."""
    out: list[str] = []
    i += 1
    while i < len(text):
        c = text[i]
        if c == '"':
            return "".join(out), i + 1
        if c == "\\":
            i += 1
            if i == len(text):
                break
            c = text[i]
        out.append(c)
        i += 1
    raise SipParseError(f"unterminated quoted string in {text!r}")


def _read_bare(text: str, i: int) -> tuple[str, int]:
    """An unquoted value. Tolerant on purpose: some servers send base64 nonces unquoted,
    which are not tokens ('/', '='), so take everything up to whitespace or a comma."""
    start = i
    while i < len(text) and text[i] not in _WS and text[i] != ",":
        if text[i] == '"' or text[i] < " " or text[i] == "\x7f":
            raise SipParseError(f"bad character in unquoted value in {text!r}")
        i += 1
    if i == start:
        raise SipParseError(f"missing value at offset {start} in {text!r}")
    return text[start:i], i


def _parse_params(text: str) -> dict[str, str]:
    """``a=1, b="x, y"`` -> {"a": "1", "b": "x, y"}; names lower-cased (RFC 7235 2.1)."""
    params: dict[str, str] = {}
    i = 0
    while True:
        # Empty list elements are allowed and ignored (RFC 7230 section 7).
        i = _skip(text, i, _WS + ",")
        if i == len(text):
            return params
        name, i = _read_token(text, i, "a parameter name")
        i = _skip(text, i, _WS)
        if i == len(text) or text[i] != "=":
            raise SipParseError(f"parameter {name!r} has no value in {text!r}")
        i = _skip(text, i + 1, _WS)
        if i < len(text) and text[i] == '"':
            value, i = _read_quoted(text, i)
        else:
            value, i = _read_bare(text, i)
        key = name.lower()
        if key in params:
            # Each directive may appear once (RFC 7616 sections 3.3 and 3.4); two differing
            # copies would make it ambiguous which one the response was computed over.
            raise SipParseError(f"duplicate parameter {key!r} in {text!r}")
        params[key] = value
        i = _skip(text, i, _WS)
        if i < len(text) and text[i] != ",":
            raise SipParseError(f"expected ',' at offset {i} in {text!r}")


def _parse_digest(value: str, what: str) -> dict[str, str]:
    """Split ``Digest k=v, ...`` into its parameters; refuse any other scheme."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise SipParseError(f"{what} is not valid text") from exc
    text = value.strip(_WS)
    scheme, i = _read_token(text, 0, f"the {what} scheme")
    if scheme.lower() != "digest":
        raise SipParseError(f"{what} scheme {scheme!r} is not Digest")
    if i < len(text) and text[i] not in _WS:
        raise SipParseError(f"junk after the scheme in {what}: {text!r}")
    return _parse_params(text[i:])


def _required(params: Mapping[str, str], name: str, what: str) -> str:
    value = params.get(name)
    if value is None:
        raise SipParseError(f"{what} lacks {name}")
    return value


def _parse_algorithm(params: Mapping[str, str], what: str) -> _Algorithm:
    # Absent means MD5 (RFC 2617 section 3.2.1, RFC 7616 section 3.3).
    name = params.get("algorithm", "MD5")
    algo = _find_algorithm(name)
    if algo is None:
        raise SipParseError(f"unsupported algorithm {name!r} in {what}")
    return algo


# --- challenges (WWW-Authenticate / Proxy-Authenticate) ---------------------------------


@dataclass(frozen=True, slots=True)
class Challenge:
    """One Digest challenge from a 401 WWW-Authenticate or 407 Proxy-Authenticate."""

    scheme: str = field(default="Digest", init=False)
    realm: str
    nonce: str
    algorithm: str = "MD5"
    qop: tuple[str, ...] = ()  # as offered, lower-cased; empty: the server wants RFC 2069
    opaque: str | None = None
    stale: bool = False

    @classmethod
    def parse(cls, header_value: str) -> Challenge:
        what = "challenge"
        params = _parse_digest(header_value, what)
        algo = _parse_algorithm(params, what)
        qop = _parse_qop_options(params.get("qop", ""))
        if qop and not any(q in _SUPPORTED_QOP for q in qop):
            raise SipParseError(f"challenge offers no supported qop: {qop!r}")
        if algo.session and not qop:
            # -sess needs a cnonce, and a cnonce is only sent along with a qop (RFC 2617 3.2.2).
            raise SipParseError(f"challenge asks for {algo.name} without a qop")
        return cls(
            realm=_required(params, "realm", what),
            nonce=_required(params, "nonce", what),
            algorithm=algo.name,
            qop=qop,
            opaque=params.get("opaque"),
            # Anything but a case-insensitive TRUE means not stale (RFC 2617 section 3.2.1).
            stale=params.get("stale", "").lower() == "true",
        )

    def __str__(self) -> str:
        algo = _algorithm_arg(self.algorithm)
        # realm, nonce, opaque and qop are quoted; algorithm and stale are not (RFC 7616 3.3).
        params = [("realm", _quote(self.realm, "realm")), ("nonce", _quote(self.nonce, "nonce"))]
        if self.opaque is not None:
            params.append(("opaque", _quote(self.opaque, "opaque")))
        params.append(("algorithm", algo.name))
        if self.qop:
            params.append(("qop", _quote(",".join(_check_qop_tokens(self.qop)), "qop")))
        if self.stale:
            params.append(("stale", "TRUE"))
        return _format(params)


def _parse_qop_options(value: str) -> tuple[str, ...]:
    # qop-options is a quoted, comma-separated list of tokens (RFC 2617 section 3.2.1).
    tokens = [t.strip(_WS).lower() for t in value.split(",")]
    for t in tokens:
        if t and not all(c in _TOKEN_CHARS for c in t):
            raise SipParseError(f"bad qop option {t!r}")
    return tuple(t for t in tokens if t)


def _check_qop_tokens(qop: Iterable[str]) -> list[str]:
    tokens = list(qop)
    for t in tokens:
        if not t or not all(c in _TOKEN_CHARS for c in t):
            raise ValueError(f"bad qop token {t!r}")
    return tokens


def challenge_header(
    *,
    realm: str,
    nonce: str,
    algorithm: str = "MD5",
    qop: str | None = "auth",
    opaque: str | None = None,
    stale: bool = False,
) -> str:
    """The value of a WWW-Authenticate / Proxy-Authenticate header.

    ``qop`` is a comma-separated list ("auth", "auth-int", "auth,auth-int"); "" or None
    sends no qop, which asks for the RFC 2069 computation (not allowed with -sess).
    """
    algo = _algorithm_arg(algorithm)
    offered = tuple(t.strip(_WS).lower() for t in (qop or "").split(",") if t.strip(_WS))
    if offered and not any(q in _SUPPORTED_QOP for q in offered):
        raise ValueError(f"no supported qop in {qop!r}")
    if algo.session and not offered:
        raise ValueError(f"{algo.name} needs a qop")
    challenge = Challenge(
        realm=realm, nonce=nonce, algorithm=algo.name, qop=offered, opaque=opaque, stale=stale
    )
    return str(challenge)


# --- credentials and the client's answer ------------------------------------------------


@dataclass(frozen=True, slots=True)
class Credentials:
    """A username and password, optionally only for one realm.

    The password is kept out of ``repr`` so credentials can appear in logs safely.
    """

    username: str
    password: str = field(repr=False)
    realm: str | None = None  # None: answer any realm

    def applies_to(self, challenge: Challenge) -> bool:
        return self.realm is None or self.realm == challenge.realm


def authorization(
    challenge: Challenge,
    credentials: Credentials,
    *,
    method: str,
    uri: str,
    cnonce: str,
    nc: int = 1,
    body: bytes = b"",
) -> str:
    """The value of the Authorization (or Proxy-Authorization) header answering ``challenge``.

    ``uri`` is the Request-URI of the request being sent (RFC 3261 section 22.4); ``cnonce``
    should be fresh random text and ``nc`` counts the uses of this nonce, starting at 1.
    """
    if not credentials.applies_to(challenge):
        raise ValueError(
            f"credentials for realm {credentials.realm!r} offered to realm {challenge.realm!r}"
        )
    algo = _algorithm_arg(challenge.algorithm)
    qop = _choose_qop(challenge.qop)
    if qop is not None and not cnonce:
        raise ValueError("an empty cnonce defeats its purpose")
    header = AuthorizationHeader(
        username=credentials.username,
        realm=challenge.realm,
        nonce=challenge.nonce,
        uri=uri,
        response=_response(
            algo,
            username=credentials.username,
            realm=challenge.realm,
            password=credentials.password,
            nonce=challenge.nonce,
            uri=uri,
            method=method,
            qop=qop,
            cnonce=cnonce if qop else None,
            nc=nc if qop else None,
            body=body,
        ),
        algorithm=algo.name,
        qop=qop,
        cnonce=cnonce if qop else None,
        nc=nc if qop else None,
        opaque=challenge.opaque,  # echoed unchanged (RFC 2617 section 3.2.2)
    )
    return str(header)


# --- the server's view of the answer ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class AuthorizationHeader:
    """A parsed Authorization / Proxy-Authorization value, Digest scheme."""

    scheme: str = field(default="Digest", init=False)
    username: str
    realm: str
    nonce: str
    uri: str
    response: str  # lower-case hex
    algorithm: str = "MD5"
    qop: str | None = None  # "auth", "auth-int" or None (RFC 2069)
    cnonce: str | None = None  # present exactly when qop is
    nc: int | None = None  # present exactly when qop is
    opaque: str | None = None

    @classmethod
    def parse(cls, value: str) -> AuthorizationHeader:
        what = "authorization"
        params = _parse_digest(value, what)
        algo = _parse_algorithm(params, what)
        qop = _parse_answer_qop(params.get("qop"))
        cnonce: str | None = None
        nc: int | None = None
        if qop is not None:
            # cnonce and nc MUST accompany a qop (RFC 2617 section 3.2.2).
            cnonce = _required(params, "cnonce", what)
            nc = _parse_nc(_required(params, "nc", what))
        elif algo.session:
            raise SipParseError(f"{algo.name} answer without qop has no cnonce to hash")
        return cls(
            username=_required(params, "username", what),
            realm=_required(params, "realm", what),
            nonce=_required(params, "nonce", what),
            uri=_required(params, "uri", what),
            response=_parse_response(_required(params, "response", what), algo),
            algorithm=algo.name,
            qop=qop,
            cnonce=cnonce,
            nc=nc,
            opaque=params.get("opaque"),
        )

    def __str__(self) -> str:
        # username, realm, nonce, uri, response, cnonce and opaque are quoted; algorithm,
        # qop and nc are not, for historical reasons (RFC 7616 section 3.4).
        params = [
            ("username", _quote(self.username, "username")),
            ("realm", _quote(self.realm, "realm")),
            ("nonce", _quote(self.nonce, "nonce")),
            ("uri", _quote(self.uri, "uri")),
            ("response", _quote(self.response, "response")),
            ("algorithm", _algorithm_arg(self.algorithm).name),
        ]
        if self.qop is not None:
            if self.qop not in _SUPPORTED_QOP or self.cnonce is None or self.nc is None:
                raise ValueError("qop needs a supported value, a cnonce and an nc")
            params += [
                ("cnonce", _quote(self.cnonce, "cnonce")),
                ("qop", self.qop),
                ("nc", _format_nc(self.nc)),
            ]
        if self.opaque is not None:
            params.append(("opaque", _quote(self.opaque, "opaque")))
        return _format(params)


def _parse_answer_qop(value: str | None) -> str | None:
    if value is None:
        return None
    qop = value.strip(_WS).lower()
    if qop not in _SUPPORTED_QOP:
        raise SipParseError(f"unsupported qop {value!r}")
    return qop


def _parse_nc(value: str) -> int:
    # Checked by pattern rather than int(..., 16), which would also take "0x1", "_" and
    # non-ASCII digits.
    if not _NC_RE.fullmatch(value):
        raise SipParseError(f"bad nonce count {value!r}")
    nc = int(value, 16)
    if nc == 0:
        raise SipParseError("nonce count 0: counting starts at 1")
    return nc


def _parse_response(value: str, algo: _Algorithm) -> str:
    response = value.lower()  # request-digest is LHEX; accept upper case from lax peers
    if len(response) != algo.hex_length or not all(c in _HEX for c in response):
        raise SipParseError(f"response is not a {algo.name} digest: {value!r}")
    return response


def verify(header: AuthorizationHeader, *, password: str, method: str, body: bytes = b"") -> bool:
    """Whether ``header.response`` is right for ``password`` and this request.

    Only the digest is checked; see the module docstring for what the caller must add.
    """
    if header.qop is not None and header.qop not in _SUPPORTED_QOP:
        raise ValueError(f"unsupported qop {header.qop!r}")
    expected = _response(
        _algorithm_arg(header.algorithm),
        username=header.username,
        realm=header.realm,
        password=password,
        nonce=header.nonce,
        uri=header.uri,
        method=method,
        qop=header.qop,
        cnonce=header.cnonce,
        nc=header.nc,
        body=body,
    )
    # Constant-time, so response timing does not reveal how many leading digits matched.
    # Compared as bytes: compare_digest refuses non-ASCII str.
    given = header.response.lower().encode("utf-8", "surrogatepass")
    return hmac.compare_digest(expected.encode("ascii"), given)
