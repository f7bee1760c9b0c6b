"""Digest authentication: RFC vectors, round trips, tolerant parsing and fuzzing."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from voiceplane.sip.digest import (
    ALGORITHMS,
    AuthorizationHeader,
    Challenge,
    Credentials,
    authorization,
    challenge_header,
    verify,
)
from voiceplane.sip.errors import SipParseError

# --- known vectors -----------------------------------------------------------------------

# RFC 2617 section 3.5, with the line folding of the RFC text kept.
RFC2617_CHALLENGE = """Digest
                 realm="testrealm@host.com",
                 qop="auth,auth-int",
                 nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",
                 opaque="5ccc069c403ebaf9f0171e9517f40e41\""""
RFC2617_AUTHORIZATION = """Digest username="Mufasa",
                 realm="testrealm@host.com",
                 nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",
                 uri="/dir/index.html",
                 qop=auth,
                 nc=00000001,
                 cnonce="0a4f113b",
                 response="6629fae49393a05397450978507c4ef1",
                 opaque="5ccc069c403ebaf9f0171e9517f40e41\""""

# RFC 7616 section 3.9.1: one request, answered with SHA-256 and with MD5.
RFC7616_NONCE = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v"
RFC7616_OPAQUE = "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"
RFC7616_CNONCE = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"
RFC7616_RESPONSES = {
    "MD5": "8ca523f5e9506fed4657c9700eebdbec",
    "SHA-256": "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
}


def rfc7616_challenge(algorithm: str) -> str:
    return f"""Digest
    realm="http-auth@example.org",
    qop="auth, auth-int",
    algorithm={algorithm},
    nonce="{RFC7616_NONCE}",
    opaque="{RFC7616_OPAQUE}\""""


def test_rfc2617_example_client() -> None:
    challenge = Challenge.parse(RFC2617_CHALLENGE)
    assert challenge == Challenge(
        realm="testrealm@host.com",
        nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",
        qop=("auth", "auth-int"),
        opaque="5ccc069c403ebaf9f0171e9517f40e41",
    )
    value = authorization(
        challenge,
        Credentials("Mufasa", "Circle Of Life"),
        method="GET",
        uri="/dir/index.html",
        cnonce="0a4f113b",
    )
    # Pins the wire form: quoted strings where RFC 7616 section 3.4 wants them, and bare
    # algorithm, qop and nc.
    assert value == (
        'Digest username="Mufasa", realm="testrealm@host.com", '
        'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", uri="/dir/index.html", '
        'response="6629fae49393a05397450978507c4ef1", algorithm=MD5, cnonce="0a4f113b", '
        'qop=auth, nc=00000001, opaque="5ccc069c403ebaf9f0171e9517f40e41"'
    )


def test_rfc2617_example_server() -> None:
    header = AuthorizationHeader.parse(RFC2617_AUTHORIZATION)
    assert header.username == "Mufasa"
    assert header.qop == "auth"
    assert header.nc == 1
    assert header.algorithm == "MD5"
    assert verify(header, password="Circle Of Life", method="GET")
    assert not verify(header, password="Circle of Life", method="GET")


@pytest.mark.parametrize(("algorithm", "expected"), sorted(RFC7616_RESPONSES.items()))
def test_rfc7616_example(algorithm: str, expected: str) -> None:
    challenge = Challenge.parse(rfc7616_challenge(algorithm))
    assert challenge.algorithm == algorithm
    assert challenge.qop == ("auth", "auth-int")
    value = authorization(
        challenge,
        Credentials("Mufasa", "Circle of Life"),
        method="GET",
        uri="/dir/index.html",
        cnonce=RFC7616_CNONCE,
    )
    header = AuthorizationHeader.parse(value)
    assert header.response == expected
    assert header.qop == "auth"
    assert header.nc == 1
    assert header.opaque == RFC7616_OPAQUE
    assert header.algorithm == algorithm
    assert f"algorithm={algorithm}," in value
    assert "nc=00000001" in value


@pytest.mark.parametrize(("algorithm", "expected"), sorted(RFC7616_RESPONSES.items()))
def test_rfc7616_authorization_text_verifies(algorithm: str, expected: str) -> None:
    text = f"""Digest username="Mufasa",
    realm="http-auth@example.org",
    uri="/dir/index.html",
    algorithm={algorithm},
    nonce="{RFC7616_NONCE}",
    nc=00000001,
    cnonce="{RFC7616_CNONCE}",
    qop=auth,
    response="{expected}",
    opaque="{RFC7616_OPAQUE}\""""
    header = AuthorizationHeader.parse(text)
    assert verify(header, password="Circle of Life", method="GET")
    assert not verify(header, password="Circle of Life", method="POST")


def test_sha512_256_is_the_fips_hash_not_truncated_sha512() -> None:
    # SHA-512/256 has its own initial values (FIPS 180-4); truncating SHA-512 is wrong.
    challenge = Challenge(realm="r", nonce="n", algorithm="SHA-512-256")
    header = AuthorizationHeader.parse(
        authorization(challenge, Credentials("u", "p"), method="REGISTER", uri="sip:r", cnonce="c")
    )

    def h(text: str) -> str:
        return hashlib.new("sha512_256", text.encode()).hexdigest()

    def truncated(text: str) -> str:
        return hashlib.sha512(text.encode()).hexdigest()[:64]

    assert header.response == h(f"{h('u:r:p')}:n:{h('REGISTER:sip:r')}")
    assert header.response != truncated(f"{truncated('u:r:p')}:n:{truncated('REGISTER:sip:r')}")


# --- computation details -----------------------------------------------------------------


def h_md5(text: str | bytes) -> str:
    return hashlib.md5(text.encode() if isinstance(text, str) else text).hexdigest()


def test_md5_sess_binds_nonce_and_cnonce() -> None:
    # RFC 7616 section 3.4.2: A1 = H(user:realm:pass):nonce:cnonce for -sess.
    challenge = Challenge(realm="r", nonce="N", algorithm="MD5-sess", qop=("auth",))
    value = authorization(
        challenge, Credentials("u", "p"), method="INVITE", uri="sip:b@r", cnonce="C", nc=2
    )
    ha1 = h_md5(f"{h_md5('u:r:p')}:N:C")
    ha2 = h_md5("INVITE:sip:b@r")
    assert AuthorizationHeader.parse(value).response == h_md5(f"{ha1}:N:00000002:C:auth:{ha2}")


def test_auth_int_hashes_the_body() -> None:
    challenge = Challenge(realm="r", nonce="N", qop=("auth-int",))
    body = b"v=0\r\n"
    value = authorization(
        challenge, Credentials("u", "p"), method="INVITE", uri="sip:b@r", cnonce="C", body=body
    )
    ha2 = h_md5(f"INVITE:sip:b@r:{h_md5(body)}")
    expected = h_md5(f"{h_md5('u:r:p')}:N:00000001:C:auth-int:{ha2}")
    header = AuthorizationHeader.parse(value)
    assert header.qop == "auth-int"
    assert header.response == expected
    assert verify(header, password="p", method="INVITE", body=body)
    assert not verify(header, password="p", method="INVITE", body=b"v=1\r\n")


def test_no_qop_is_rfc2069() -> None:
    challenge = Challenge(realm="r", nonce="N")
    value = authorization(challenge, Credentials("u", "p"), method="BYE", uri="sip:x", cnonce="C")
    assert "cnonce" not in value and "qop" not in value and "nc=" not in value
    header = AuthorizationHeader.parse(value)
    assert header.response == h_md5(f"{h_md5('u:r:p')}:N:{h_md5('BYE:sip:x')}")
    assert verify(header, password="p", method="BYE")


@pytest.mark.parametrize(
    ("offered", "chosen"),
    [
        (("auth",), "auth"),
        (("auth-int",), "auth-int"),
        (("auth", "auth-int"), "auth"),
        (("auth-int", "auth"), "auth"),
        (("x-future", "auth-int"), "auth-int"),
        ((), None),
    ],
)
def test_qop_choice(offered: tuple[str, ...], chosen: str | None) -> None:
    challenge = Challenge(realm="r", nonce="n", qop=offered)
    value = authorization(challenge, Credentials("u", "p"), method="M", uri="sip:x", cnonce="c")
    assert AuthorizationHeader.parse(value).qop == chosen


def test_auth_ignores_the_body() -> None:
    challenge = Challenge(realm="r", nonce="n", qop=("auth",))
    value = authorization(
        challenge, Credentials("u", "p"), method="M", uri="sip:x", cnonce="c", body=b"a"
    )
    assert verify(AuthorizationHeader.parse(value), password="p", method="M", body=b"b")


@pytest.mark.parametrize(
    ("nc", "text"), [(1, "00000001"), (255, "000000ff"), (2**32 - 1, "ffffffff")]
)
def test_nc_is_eight_hex_digits(nc: int, text: str) -> None:
    challenge = Challenge(realm="r", nonce="n", qop=("auth",))
    value = authorization(challenge, Credentials("u", "p"), method="M", uri="u", cnonce="c", nc=nc)
    assert f"nc={text}" in value
    assert AuthorizationHeader.parse(value).nc == nc


@pytest.mark.parametrize("nc", [0, -1, 2**32])
def test_nc_out_of_range(nc: int) -> None:
    challenge = Challenge(realm="r", nonce="n", qop=("auth",))
    with pytest.raises(ValueError):
        authorization(challenge, Credentials("u", "p"), method="M", uri="u", cnonce="c", nc=nc)


def test_credentials_for_another_realm_are_refused() -> None:
    challenge = Challenge(realm="a.example", nonce="n")
    creds = Credentials("u", "p", realm="b.example")
    assert not creds.applies_to(challenge)
    with pytest.raises(ValueError):
        authorization(challenge, creds, method="M", uri="u", cnonce="c")
    assert Credentials("u", "p", realm="a.example").applies_to(challenge)


def test_password_not_in_repr() -> None:
    assert "hunter2" not in repr(Credentials("u", "hunter2"))


def test_builders_refuse_header_injection() -> None:
    challenge = Challenge(realm="r", nonce="n", qop=("auth",))
    with pytest.raises(ValueError):
        authorization(challenge, Credentials("u\r\nX: y", "p"), method="M", uri="u", cnonce="c")
    with pytest.raises(ValueError):
        challenge_header(realm="r\n", nonce="n")


def test_builders_refuse_bad_arguments() -> None:
    with pytest.raises(ValueError):
        challenge_header(realm="r", nonce="n", algorithm="SHA-1")
    with pytest.raises(ValueError):
        challenge_header(realm="r", nonce="n", algorithm="MD5-sess", qop="")
    with pytest.raises(ValueError):
        challenge_header(realm="r", nonce="n", qop="x-other")
    with pytest.raises(ValueError):
        authorization(
            Challenge(realm="r", nonce="n", qop=("x-other",)),
            Credentials("u", "p"),
            method="M",
            uri="u",
            cnonce="c",
        )
    with pytest.raises(ValueError):
        authorization(
            Challenge(realm="r", nonce="n", qop=("auth",)),
            Credentials("u", "p"),
            method="M",
            uri="u",
            cnonce="",
        )


# --- round trips -------------------------------------------------------------------------

QOP_MODES = ["auth", "auth-int", "auth,auth-int", ""]
CASES = [
    (a, q) for a in ALGORITHMS for q in QOP_MODES if not (a.lower().endswith("-sess") and q == "")
]


def test_supported_algorithms() -> None:
    for name in ("MD5", "MD5-sess", "SHA-256", "SHA-256-sess"):
        assert name in ALGORITHMS


@pytest.mark.parametrize(("algorithm", "qop"), CASES)
def test_round_trip(algorithm: str, qop: str) -> None:
    value = challenge_header(realm="sip.example", nonce="abc123", algorithm=algorithm, qop=qop)
    challenge = Challenge.parse(value)
    assert challenge.algorithm == algorithm
    header = AuthorizationHeader.parse(
        authorization(
            challenge,
            Credentials("alice", "s3cret"),
            method="INVITE",
            uri="sip:bob@sip.example",
            cnonce="0123abcd",
            nc=7,
            body=b"sdp",
        )
    )
    assert header.algorithm == algorithm
    assert verify(header, password="s3cret", method="INVITE", body=b"sdp")
    assert not verify(header, password="s3cret!", method="INVITE", body=b"sdp")
    assert not verify(header, password="s3cret", method="ACK", body=b"sdp")


@pytest.mark.parametrize("algorithm", [a for a in ALGORITHMS if a.lower().endswith("-sess")])
def test_sess_without_qop_is_refused(algorithm: str) -> None:
    with pytest.raises(SipParseError):
        Challenge.parse(f'Digest realm="r", nonce="n", algorithm={algorithm}')
    with pytest.raises(SipParseError):
        AuthorizationHeader.parse(
            f'Digest username="u", realm="r", nonce="n", uri="u", algorithm={algorithm}, '
            f'response="{"0" * 64}"'
        )


def test_challenge_header_round_trips_all_fields() -> None:
    value = challenge_header(
        realm='we "quote" \\ this',
        nonce="n,o=n;ce",
        algorithm="sha-256",
        qop="auth, auth-int",
        opaque="",
        stale=True,
    )
    assert Challenge.parse(value) == Challenge(
        realm='we "quote" \\ this',
        nonce="n,o=n;ce",
        algorithm="SHA-256",
        qop=("auth", "auth-int"),
        opaque="",
        stale=True,
    )
    assert "stale=TRUE" in value
    assert "algorithm=SHA-256" in value


# The SIP quoted-string carries any UTF-8 except controls (RFC 3261 section 25.1).
printable = st.text(st.characters(codec="utf-8", exclude_categories=("Cc", "Cs")), max_size=40)


@given(
    username=printable,
    realm=printable,
    password=printable,
    nonce=printable,
    opaque=st.none() | printable,
    uri=printable,
    cnonce=printable.filter(bool),
    nc=st.integers(1, 2**32 - 1),
    body=st.binary(max_size=64),
    case=st.sampled_from(CASES),
)
def test_round_trip_property(
    username: str,
    realm: str,
    password: str,
    nonce: str,
    opaque: str | None,
    uri: str,
    cnonce: str,
    nc: int,
    body: bytes,
    case: tuple[str, str],
) -> None:
    algorithm, qop = case
    value = challenge_header(realm=realm, nonce=nonce, algorithm=algorithm, qop=qop, opaque=opaque)
    challenge = Challenge.parse(value)
    assert (challenge.realm, challenge.nonce, challenge.opaque) == (realm, nonce, opaque)
    answer = authorization(
        challenge,
        Credentials(username, password),
        method="REGISTER",
        uri=uri,
        cnonce=cnonce,
        nc=nc,
        body=body,
    )
    header = AuthorizationHeader.parse(answer)
    assert (header.username, header.realm, header.uri, header.opaque) == (
        username,
        realm,
        uri,
        opaque,
    )
    assert verify(header, password=password, method="REGISTER", body=body)
    assert not verify(header, password=password + "x", method="REGISTER", body=body)


# --- tolerant parsing --------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        'Digest realm="r",nonce="n"',
        '  Digest   realm = "r" ,   nonce="n"  ',
        'digest realm="r", nonce="n"',
        'DIGEST REALM="r", NONCE="n"',
        'Digest\trealm="r",\tnonce="n"',
        'Digest realm="r", nonce="n", algorithm=md5',
        'Digest realm="r", nonce="n", algorithm="MD5"',
        'Digest realm="r", nonce="n",',
        'Digest , realm="r",, nonce="n"',
        "Digest realm=r, nonce=n",
        'Digest realm="r", nonce="n", domain="sip:a sip:b", x-unknown=yes',
    ],
)
def test_parse_tolerant_forms(value: str) -> None:
    challenge = Challenge.parse(value)
    assert (challenge.realm, challenge.nonce, challenge.algorithm) == ("r", "n", "MD5")
    assert challenge.qop == ()
    assert not challenge.stale


@pytest.mark.parametrize(
    ("qop", "expected"),
    [
        ('"auth,auth-int"', ("auth", "auth-int")),
        ('"auth, auth-int"', ("auth", "auth-int")),
        ('" Auth-Int ,AUTH "', ("auth-int", "auth")),
        ("auth", ("auth",)),
        ('""', ()),
    ],
)
def test_parse_qop_options(qop: str, expected: tuple[str, ...]) -> None:
    assert Challenge.parse(f'Digest realm="r", nonce="n", qop={qop}').qop == expected


@pytest.mark.parametrize(
    ("stale", "expected"),
    [("TRUE", True), ("true", True), ('"True"', True), ("FALSE", False), ("yes", False)],
)
def test_parse_stale(stale: str, expected: bool) -> None:
    assert Challenge.parse(f'Digest realm="r", nonce="n", stale={stale}').stale is expected


def test_parse_algorithm_case_insensitive() -> None:
    value = 'Digest realm="r", nonce="n", algorithm=sha-256-SESS, qop="auth"'
    assert Challenge.parse(value).algorithm == "SHA-256-sess"


def test_parse_quoted_escapes_and_commas() -> None:
    value = r'Digest realm="a\"b\\c, d", nonce="x,y", opaque="o=p"'
    challenge = Challenge.parse(value)
    assert challenge.realm == 'a"b\\c, d'
    assert challenge.nonce == "x,y"
    assert challenge.opaque == "o=p"


def test_authorization_parse_tolerates_quoted_qop_and_upper_hex() -> None:
    header = AuthorizationHeader.parse(
        'digest USERNAME="u", realm="r", nonce="n", uri="sip:x", qop="AUTH", nc=0000000A, '
        f'cnonce="c", response="{"AB" * 16}"'
    )
    assert header.qop == "auth"
    assert header.nc == 10
    assert header.response == "ab" * 16


# --- malformed input ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "",
        "   ",
        "Digest",
        'Basic realm="r"',
        'Bearer realm="r", nonce="n"',
        'Digestrealm="r", nonce="n"',
        'Digest nonce="n"',
        'Digest realm="r"',
        'Digest realm="r", nonce="n", algorithm=SHA-1',
        'Digest realm="r", nonce="n", algorithm=',
        'Digest realm="r", nonce="n", qop="x-only"',
        'Digest realm="r", nonce="n", qop="au th"',
        'Digest realm="r", nonce="n", realm="s"',
        'Digest realm="r, nonce="n"',
        'Digest realm="r" nonce="n"',
        'Digest realm="r", nonce',
        'Digest realm="r", nonce="n", ="x"',
        'Digest realm="r", nonce=a"b',
        'Digest realm="r", nonce="n", Basic realm="x"',
        'Digest realm="r", nonce="n\\',
        "Digest abc==",
        'Digest realm="\ud800", nonce="n"',
    ],
)
def test_challenge_parse_rejects(value: str) -> None:
    with pytest.raises(SipParseError):
        Challenge.parse(value)


GOOD_AUTH = {
    "username": '"u"',
    "realm": '"r"',
    "nonce": '"n"',
    "uri": '"sip:x"',
    "response": '"' + "0" * 32 + '"',
    "qop": "auth",
    "cnonce": '"c"',
    "nc": "00000001",
}


def auth_text(**changes: str | None) -> str:
    params = {**GOOD_AUTH, **changes}
    return "Digest " + ", ".join(f"{k}={v}" for k, v in params.items() if v is not None)


def test_good_auth_text_parses() -> None:
    assert AuthorizationHeader.parse(auth_text()).username == "u"


@pytest.mark.parametrize(
    "changes",
    [
        {"username": None},
        {"realm": None},
        {"nonce": None},
        {"uri": None},
        {"response": None},
        {"cnonce": None},
        {"nc": None},
        {"nc": "1"},
        {"nc": "0x000001"},
        {"nc": "0000_001"},
        {"nc": "00000000"},
        {"nc": "0000000g"},
        {"nc": "٠٠٠٠٠٠٠١"},
        {"qop": "auth-conf"},
        {"response": '"xyz"'},
        {"response": '"' + "0" * 64 + '"'},
        {"response": '"' + "g" * 32 + '"'},
        {"algorithm": "SHA-1"},
        {"algorithm": "SHA-256"},  # an MD5-length response for SHA-256
    ],
)
def test_authorization_parse_rejects(changes: dict[str, str | None]) -> None:
    with pytest.raises(SipParseError):
        AuthorizationHeader.parse(auth_text(**changes))


def test_authorization_parse_rejects_other_schemes() -> None:
    with pytest.raises(SipParseError):
        AuthorizationHeader.parse("Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==")


def test_parse_error_is_a_400() -> None:
    with pytest.raises(SipParseError) as info:
        AuthorizationHeader.parse("Digest garbage")
    assert info.value.status_hint == 400


# --- fuzzing -----------------------------------------------------------------------------

# Fragments that steer random text into the deeper branches of the parsers.
FRAGMENTS = st.sampled_from(
    [
        "Digest", "digest", " ", "\t", "\r\n ", ",", "=", '"', "\\", "realm", "nonce", "uri",
        "username", "response", "qop", "auth", "auth-int", "nc", "00000001", "cnonce",
        "algorithm", "MD5", "sha-256-sess", "stale", "TRUE", "opaque", "0" * 32, "x", "é", "\x00",
    ]
)  # fmt: skip
fragment_text = st.lists(FRAGMENTS, max_size=30).map("".join)
any_text = st.text() | fragment_text | fragment_text.map(lambda t: "Digest " + t)


@given(any_text)
def test_challenge_parse_raises_only_sip_parse_error(text: str) -> None:
    try:
        Challenge.parse(text)
    except SipParseError:
        pass


@given(any_text)
def test_authorization_parse_raises_only_sip_parse_error(text: str) -> None:
    try:
        header = AuthorizationHeader.parse(text)
    except SipParseError:
        return
    # Whatever parses can be verified without raising.
    verify(header, password="p", method="INVITE")


@given(st.data())
def test_mutated_headers_raise_only_sip_parse_error(data: st.DataObject) -> None:
    base = data.draw(st.sampled_from([RFC2617_CHALLENGE, RFC2617_AUTHORIZATION]))
    start = data.draw(st.integers(0, len(base)))
    end = data.draw(st.integers(start, min(len(base), start + 8)))
    text = base[:start] + data.draw(st.text(max_size=4)) + base[end:]
    for parse in (Challenge.parse, AuthorizationHeader.parse):
        try:
            parse(text)
        except SipParseError:
            pass
