"""SIP messages: parsing, framing and serialising (message.py)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voiceplane.sip.errors import SipParseError
from voiceplane.sip.message import (
    COMPACT_FORMS,
    Headers,
    Request,
    Response,
    StreamFramer,
    canonical_name,
    normalize_name,
    parse_message,
)

INVITE_HEAD = (
    "INVITE sip:bob@example.com SIP/2.0\r\n"
    "Via: SIP/2.0/UDP pc33.example.com:5060;branch=z9hG4bK776asdhds\r\n"
    "Max-Forwards: 70\r\n"
    "To: Bob <sip:bob@example.com>\r\n"
    'From: "Alice" <sip:alice@example.com>;tag=1928301774\r\n'
    "Call-ID: a84b4c76e66710@pc33.example.com\r\n"
    "CSeq: 314159 INVITE\r\n"
    "Contact: <sip:alice@pc33.example.com>\r\n"
)
SDP = b"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\n"


def invite(extra: str = "", body: bytes = b"", length: int | None = None) -> bytes:
    """The INVITE above with ``extra`` header lines and Content-Length (default: the body's)."""
    cl = "" if length == -1 else f"Content-Length: {len(body) if length is None else length}\r\n"
    return (INVITE_HEAD + extra + cl + "\r\n").encode() + body


def response_bytes(start: str = "SIP/2.0 200 OK", extra: str = "", body: bytes = b"") -> bytes:
    head = (
        f"{start}\r\n"
        "Via: SIP/2.0/UDP pc33.example.com:5060;branch=z9hG4bK776asdhds;received=10.0.0.1\r\n"
        "To: Bob <sip:bob@example.com>;tag=a6c85cf\r\n"
        "From: Alice <sip:alice@example.com>;tag=1928301774\r\n"
        "Call-ID: a84b4c76e66710@pc33.example.com\r\n"
        "CSeq: 314159 INVITE\r\n"
        f"{extra}Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


# --- parsing -------------------------------------------------------------------------------


def test_request_fields_and_views() -> None:
    msg = parse_message(invite(body=SDP, extra="Content-Type: application/sdp\r\n"))
    assert isinstance(msg, Request)
    assert (msg.method, msg.uri, msg.body) == ("INVITE", "sip:bob@example.com", SDP)
    assert msg.call_id == "a84b4c76e66710@pc33.example.com"
    assert (msg.cseq.number, msg.cseq.method) == (314159, "INVITE")
    assert msg.top_via.branch == "z9hG4bK776asdhds"
    assert (msg.top_via.host, msg.top_via.port) == ("pc33.example.com", 5060)
    assert msg.from_.tag == "1928301774" and msg.from_.display == '"Alice"'
    assert msg.to.tag is None and msg.to.uri == "sip:bob@example.com"
    assert msg.headers.get("max-forwards") == "70"
    assert msg.headers.get("content-length") == str(len(SDP))


def test_response_fields_reason_with_spaces() -> None:
    msg = parse_message(response_bytes("SIP/2.0 487 Request Terminated"))
    assert isinstance(msg, Response)
    assert (msg.status, msg.reason) == (487, "Request Terminated")
    assert msg.to.tag == "a6c85cf"
    assert msg.top_via.params[-1] == ("received", "10.0.0.1")


def test_response_without_reason_phrase() -> None:
    msg = parse_message(response_bytes("SIP/2.0 180"))
    assert isinstance(msg, Response) and (msg.status, msg.reason) == (180, "")


def test_whole_message_in_compact_form() -> None:
    data = (
        (
            "INVITE sip:bob@example.com SIP/2.0\r\n"
            "v: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKc1\r\n"
            "f: <sip:alice@example.com>;tag=1\r\n"
            "t: <sip:bob@example.com>\r\n"
            "i: compact@10.0.0.1\r\n"
            "CSeq: 1 INVITE\r\n"
            "m: <sip:alice@10.0.0.1>\r\n"
            "c: application/sdp\r\n"
            "k: timer\r\n"
            f"l: {len(SDP)}\r\n\r\n"
        ).encode()
        + SDP
        + b"trailing junk"
    )
    msg = parse_message(data)
    assert isinstance(msg, Request)
    assert msg.call_id == "compact@10.0.0.1"
    assert msg.top_via.branch == "z9hG4bKc1"
    assert msg.from_.tag == "1"
    assert msg.headers.get("contact") == "<sip:alice@10.0.0.1>"
    assert msg.headers.get("content-type") == "application/sdp"
    assert msg.headers.get("supported") == "timer"
    assert msg.body == SDP  # cut to l:
    wire = msg.encode()
    for long_form in (
        b"Via: ",
        b"From: ",
        b"To: ",
        b"Call-ID: ",
        b"Contact: ",
        b"Content-Type: ",
        b"Supported: ",
        b"Content-Length: ",
    ):
        assert b"\r\n" + long_form in wire
    assert b"\r\nv:" not in wire and b"\r\ni:" not in wire


@pytest.mark.parametrize(("short", "long"), sorted(COMPACT_FORMS.items()))
def test_every_compact_form_maps_to_its_long_name(short: str, long: str) -> None:
    value = "7" if long == "content-length" else "some-value"
    body = b"x" * 7 if long == "content-length" else b""
    msg = parse_message(invite(extra=f"{short.upper()}: {value}\r\n", length=-1) + body)
    assert value in msg.headers.get_all(long)
    assert short not in [name for name, _ in msg.headers]  # stored under the long name
    assert short in msg.headers and short.upper() in msg.headers  # and found by either
    assert normalize_name(short) == long == normalize_name(short.upper())


def test_header_names_are_case_insensitive() -> None:
    data = (
        b"INVITE sip:bob@example.com SIP/2.0\r\n"
        b"VIA: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKci\r\n"
        b"fROM: <sip:alice@example.com>;tag=1\r\n"
        b"to : <sip:bob@example.com>\r\n"  # white space before the colon is allowed
        b"CALL-id: ci\r\n"
        b"cseq:2 INVITE\r\n"  # and none after it
        b"MAX-FORWARDS:\t70\r\n"
        b"CoNtEnT-LeNgTh: 0\r\n\r\n"
    )
    msg = parse_message(data)
    assert msg.call_id == "ci"
    assert msg.cseq.number == 2
    assert msg.to.uri == "sip:bob@example.com"
    assert [name for name, _ in msg.headers] == [
        "via",
        "from",
        "to",
        "call-id",
        "cseq",
        "max-forwards",
        "content-length",
    ]
    assert msg.headers.get("max-forwards") == "70"
    assert b"\r\nCall-ID: ci\r\n" in msg.encode() and b"\r\nCSeq: 2 INVITE\r\n" in msg.encode()


def test_header_name_helpers() -> None:
    assert normalize_name("  Call-ID ") == "call-id"
    assert normalize_name("I") == "call-id"
    assert canonical_name("call-id") == "Call-ID"
    assert canonical_name("www-authenticate") == "WWW-Authenticate"
    assert canonical_name("max-forwards") == "Max-Forwards"
    assert canonical_name("x-custom-thing") == "X-Custom-Thing"
    assert Headers([("Content-Type", "a/b"), ("m", "<sip:x@y>")]) == Headers(
        [("content-type", "a/b"), ("contact", "<sip:x@y>")]
    )


def test_comma_separated_via_values() -> None:
    extra = (
        "Via: SIP/2.0/UDP proxy1.example.com;branch=z9hG4bKp1, "
        "SIP/2.0/TCP proxy2.example.com:5070;branch=z9hG4bKp2\r\n"
        "v: SIP/2.0/UDP proxy3.example.com;branch=z9hG4bKp3\r\n"
    )
    data = invite().replace(b"Via: ", (b"Via: SIP/2.0/UDP edge.example.com;branch=z9hG4bKe, "), 1)
    msg = parse_message(data.replace(b"Max-Forwards", (extra + "Max-Forwards").encode(), 1))
    vias = msg.headers.get_all("via")
    assert [v.split(";branch=")[1].split(";")[0] for v in vias] == [
        "z9hG4bKe",
        "z9hG4bK776asdhds",
        "z9hG4bKp1",
        "z9hG4bKp2",
        "z9hG4bKp3",
    ]
    assert msg.headers.get("via") == "SIP/2.0/UDP edge.example.com;branch=z9hG4bKe"
    assert msg.top_via.branch == "z9hG4bKe"


def test_contact_with_commas_in_quotes_and_brackets() -> None:
    extra = (
        'Route: <sip:p1.example.com;lr>, "Proxy, the second" <sip:p2.example.com;lr>\r\n'
        'Record-Route: <sip:a@x;foo="1,2">\r\n'
    )
    data = invite(extra=extra).replace(
        b"Contact: <sip:alice@pc33.example.com>",
        b'Contact: "Doe, John \\"JD\\"" <sip:jd@a.example.com>;q=0.7, <sip:k@b;x=1,2>;q=0.1',
    )
    msg = parse_message(data)
    assert msg.headers.get_all("contact") == [
        '"Doe, John \\"JD\\"" <sip:jd@a.example.com>;q=0.7',
        "<sip:k@b;x=1,2>;q=0.1",
    ]
    assert msg.headers.get("contact") == '"Doe, John \\"JD\\"" <sip:jd@a.example.com>;q=0.7'
    assert len(msg.headers.get_all("route")) == 2
    assert msg.headers.get_all("record-route") == ['<sip:a@x;foo="1,2">']


def test_authentication_headers_are_never_split_on_commas() -> None:
    value = 'Digest realm="example.com", nonce="abc", qop="auth,auth-int"'
    msg = parse_message(
        response_bytes("SIP/2.0 401 Unauthorized", f"WWW-Authenticate: {value}\r\n")
    )
    assert msg.headers.get_all("www-authenticate") == [value]
    assert msg.headers.get("www-authenticate") == value


def test_folded_header_lines_are_joined() -> None:
    extra = "Subject: I know you're there,\r\n     pick up the phone\r\n\tand talk to me!\r\n"
    data = invite(extra=extra).replace(
        b"CSeq: 314159 INVITE\r\n", b"CSeq:\r\n 314159\r\n   INVITE\r\n"
    )
    msg = parse_message(data)
    assert msg.headers.get("subject") == "I know you're there, pick up the phone and talk to me!"
    assert msg.cseq.number == 314159 and msg.cseq.method == "INVITE"
    assert b"Subject: I know you're there, pick up the phone and talk to me!\r\n" in msg.encode()


def test_bare_lf_line_ends_are_tolerated() -> None:
    data = invite(body=SDP).replace(b"\r\n", b"\n")
    data = data[: data.index(b"\n\n") + 2] + SDP
    msg = parse_message(data)
    assert isinstance(msg, Request) and msg.body == SDP and msg.call_id.startswith("a84b")


@pytest.mark.parametrize(
    "body", [b"a\r\n\r\nb", b"a\n\nb", b"\r\n\r\n", b"\n\n", b"\n\r\nx", SDP + b"\r\n\r\n"]
)
@pytest.mark.parametrize("eol", ["\n", "\r\n"])
@pytest.mark.parametrize("blank", ["\n", "\r\n"])
def test_the_head_ends_at_the_first_blank_line_whatever_the_body_holds(
    body: bytes, eol: str, blank: str
) -> None:
    # Section 7.5: the empty line ends the head; a body may hold anything, blank lines too.
    data = (INVITE_HEAD.replace("\r\n", eol) + f"Content-Length: {len(body)}{eol}{blank}").encode()
    msg = parse_message(data + body)
    assert isinstance(msg, Request) and msg.body == body
    assert msg.headers.get("contact") == "<sip:alice@pc33.example.com>"
    assert msg.headers.get("content-length") == str(len(body))


def test_datagram_body_is_cut_to_content_length() -> None:
    msg = parse_message(invite(body=SDP + b"garbage after the body", length=len(SDP)))
    assert msg.body == SDP


def test_datagram_content_length_zero_ignores_trailing_bytes() -> None:
    assert parse_message(invite(body=b"\r\n\r\n", length=0)).body == b""


def test_datagram_without_content_length_takes_the_rest_as_body() -> None:
    assert parse_message(invite(body=SDP, length=-1)).body == SDP


def test_datagram_body_shorter_than_content_length_is_an_error() -> None:
    with pytest.raises(SipParseError, match="shorter than Content-Length"):
        parse_message(invite(body=SDP, length=len(SDP) + 1))


def test_encode_writes_one_content_length_last_from_the_body() -> None:
    msg = parse_message(invite(body=SDP, extra="Content-Type: application/sdp\r\n"))
    assert isinstance(msg, Request)
    moved = Request(msg.method, msg.uri, msg.headers.set("content-length", "999"), b"abc")
    wire = moved.encode()
    assert wire.count(b"Content-Length") == 1
    assert wire.endswith(b"\r\nContent-Length: 3\r\n\r\nabc")
    assert bytes(moved) == wire
    assert parse_message(wire).body == b"abc"


def test_headers_are_immutable_values() -> None:
    h = Headers([("Via", "a"), ("To", "b")])
    h2 = h.add("v", "c").prepend("Route", "<sip:r>")
    assert list(h) == [("via", "a"), ("to", "b")]
    assert list(h2) == [("route", "<sip:r>"), ("via", "a"), ("to", "b"), ("via", "c")]
    assert list(h2.set("VIA", "z")) == [("route", "<sip:r>"), ("via", "z"), ("to", "b")]
    assert list(h2.remove("V")) == [("route", "<sip:r>"), ("to", "b")]
    assert list(h.set("call-id", "x"))[-1] == ("call-id", "x")
    assert len(h2) == 4 and "route" in h2 and "contact" not in h2
    assert hash(h) == hash(Headers([("via", "a"), ("to", "b")]))
    assert h.get("contact") is None and h.get_all("contact") == []
    with pytest.raises(ValueError):
        Headers([("Subject", "line\r\nInjected: yes")])


# --- malformed input ---------------------------------------------------------------------------

GOOD = invite().decode()


def _swap(old: str, new: str) -> bytes:
    assert old in GOOD
    return GOOD.replace(old, new, 1).encode()


MALFORMED: list[tuple[str, bytes, str, int]] = [
    ("empty", b"", "no blank line", 400),
    ("no blank line", invite()[:-2], "no blank line", 400),
    ("not utf-8", invite().replace(b"Bob", b"B\xffob"), "not UTF-8", 400),
    ("header without colon", _swap("Max-Forwards: 70", "Max-Forwards 70"), "bad header line", 400),
    ("space in header name", _swap("Max-Forwards", "Max Forwards"), "bad header line", 400),
    ("continuation first", _swap("Via:", " Via:"), "continuation line", 400),
    # The first blank line ends the head, whatever its line end: the From after it is body.
    ("header after the blank line", b"INVITE sip:a@b SIP/2.0\nVia: x\n\r\nFrom: <sip:a@b>\r\n\r\n",
     "missing", 400),  # fmt: skip
    (
        "missing Via",
        _swap("Via: SIP/2.0/UDP pc33.example.com:5060;branch=z9hG4bK776asdhds\r\n", ""),
        "missing Via",
        400,
    ),
    (
        "missing From",
        _swap('From: "Alice" <sip:alice@example.com>;tag=1928301774\r\n', ""),
        "missing From",
        400,
    ),
    ("missing To", _swap("To: Bob <sip:bob@example.com>\r\n", ""), "missing To", 400),
    (
        "missing Call-ID",
        _swap("Call-ID: a84b4c76e66710@pc33.example.com\r\n", ""),
        "missing Call-ID",
        400,
    ),
    ("missing CSeq", _swap("CSeq: 314159 INVITE\r\n", ""), "missing CSeq", 400),
    ("bad CSeq", _swap("CSeq: 314159 INVITE", "CSeq: one INVITE"), "bad CSeq", 400),
    ("CSeq too big", _swap("CSeq: 314159", "CSeq: 2147483648"), "out of range", 400),
    (
        "CSeq method mismatch",
        _swap("CSeq: 314159 INVITE", "CSeq: 314159 BYE"),
        "does not match",
        400,
    ),
    (
        "bad Content-Length",
        _swap("Content-Length: 0", "Content-Length: -1"),
        "bad Content-Length",
        400,
    ),
    (
        "huge Content-Length",
        _swap("Content-Length: 0", "Content-Length: 1234567890"),
        "bad Content-Length",
        400,
    ),
    (
        "non-ASCII digit Content-Length",
        _swap("Content-Length: 0", "Content-Length: \u00b2"),
        "Content-Length",
        400,
    ),
    ("non-ASCII digit CSeq", _swap("CSeq: 314159", "CSeq: \u00b2"), "CSeq", 400),
    (
        "request line with two parts",
        _swap("INVITE sip:bob@example.com SIP/2.0", "INVITE SIP/2.0"),
        "bad request line",
        400,
    ),
    (
        "request line with four parts",
        _swap("INVITE sip:bob@example.com SIP/2.0", "INVITE sip:bob@example.com SIP/2.0 x"),
        "bad request line",
        400,
    ),
    ("bad method", _swap("INVITE sip:", "INV(TE sip:"), "bad method", 400),
    ("bad Request-URI", _swap("INVITE sip:bob@example.com", "INVITE bob"), "Request-URI", 400),
    (
        "request version",
        _swap("sip:bob@example.com SIP/2.0", "sip:bob@example.com SIP/3.0"),
        "unsupported version",
        505,
    ),
    ("response version", response_bytes("SIP/3.0 200 OK"), "unsupported version", 505),
    ("two-digit status", response_bytes("SIP/2.0 99 Odd"), "bad status code", 400),
    ("status above 699", response_bytes("SIP/2.0 700 Odd"), "bad status code", 400),
    ("letters in status", response_bytes("SIP/2.0 2OO OK"), "bad status code", 400),
    ("non-ASCII digit status", response_bytes("SIP/2.0 2\u00b20 OK"), "status code", 400),
    (
        "headers too large",
        b"INVITE sip:a@b SIP/2.0\r\nX: " + b"a" * 70000 + b"\r\n\r\n",
        "too large",
        513,
    ),
]


@pytest.mark.parametrize(
    ("data", "reason", "hint"),
    [pytest.param(d, r, h, id=name) for name, d, r, h in MALFORMED],
)
def test_malformed_input_raises_with_a_reason(data: bytes, reason: str, hint: int) -> None:
    with pytest.raises(SipParseError) as info:
        parse_message(data)
    assert reason in info.value.reason
    assert info.value.status_hint == hint
    assert str(info.value) == info.value.reason


# --- stream framing ----------------------------------------------------------------------------

MSG1 = invite(body=SDP, extra="Content-Type: application/sdp\r\n")
MSG2 = response_bytes("SIP/2.0 180 Ringing")
MSG3 = response_bytes("SIP/2.0 200 OK", "Content-Type: application/sdp\r\n", SDP)


def drain(framer: StreamFramer) -> list[bytes]:
    out = []
    while (message := framer.next_message()) is not None:
        out.append(message)
    return out


def test_framer_fed_whole_messages() -> None:
    framer = StreamFramer()
    framer.feed(MSG1)
    assert drain(framer) == [MSG1]
    assert framer.buffered == 0


def test_framer_fed_byte_by_byte() -> None:
    framer = StreamFramer()
    got: list[bytes] = []
    stream = MSG1 + MSG2 + MSG3
    for i in range(len(stream)):
        framer.feed(stream[i : i + 1])
        got.extend(drain(framer))
        if i < len(MSG1) - 1:
            assert got == []
    assert got == [MSG1, MSG2, MSG3]
    assert [parse_message(m).body for m in got] == [SDP, b"", SDP]


def test_framer_several_messages_in_one_chunk() -> None:
    framer = StreamFramer()
    framer.feed(MSG1 + MSG2 + MSG3[:40])
    assert drain(framer) == [MSG1, MSG2]
    framer.feed(MSG3[40:])
    assert drain(framer) == [MSG3]


def test_framer_skips_crlf_keepalives() -> None:
    framer = StreamFramer()
    framer.feed(b"\r\n\r\n")  # RFC 5626 ping
    assert framer.next_message() is None and framer.buffered == 0
    framer.feed(b"\r\n" + MSG1 + b"\r\n\r\n\r\n" + MSG2 + b"\r\n")
    assert drain(framer) == [MSG1, MSG2]
    assert framer.buffered == 0


def test_framer_cuts_bare_lf_messages_at_their_first_blank_line() -> None:
    body = b"a\r\n\r\nb\n\nc"  # blank lines of both kinds in the body
    lf = (INVITE_HEAD.replace("\r\n", "\n") + f"Content-Length: {len(body)}\n\n").encode() + body
    mixed = (INVITE_HEAD + f"Content-Length: {len(body)}\r\n\n").encode() + body
    stream = lf + MSG2 + mixed + lf
    for size in (1, 7, len(stream)):
        framer = StreamFramer()
        got: list[bytes] = []
        for i in range(0, len(stream), size):
            framer.feed(stream[i : i + size])
            got.extend(drain(framer))
        assert got == [lf, MSG2, mixed, lf] and framer.buffered == 0
        assert [parse_message(m).body for m in got] == [body, b"", body, body]


def test_framer_message_without_content_length_has_no_body() -> None:
    no_length = invite(length=-1)
    framer = StreamFramer()
    framer.feed(no_length + MSG2)
    assert drain(framer) == [no_length, MSG2]
    assert parse_message(no_length).body == b""


def test_framer_compact_content_length() -> None:
    msg = invite(length=-1).replace(b"\r\n\r\n", b"\r\nl: 4\r\n\r\n") + b"abcd"
    framer = StreamFramer()
    framer.feed(msg + MSG2)
    assert drain(framer) == [msg, MSG2]


def test_framer_waits_for_the_whole_body() -> None:
    framer = StreamFramer()
    framer.feed(MSG1[:-1])
    assert framer.next_message() is None
    assert framer.buffered == len(MSG1) - 1
    framer.feed(MSG1[-1:])
    assert framer.next_message() == MSG1


def test_framer_errors() -> None:
    framer = StreamFramer()
    framer.feed(invite(length=-1).replace(b"\r\n\r\n", b"\r\nContent-Length: x\r\n\r\n"))
    with pytest.raises(SipParseError, match="Content-Length"):
        framer.next_message()
    small = StreamFramer(max_message=100)
    small.feed(MSG1)
    with pytest.raises(SipParseError) as info:
        small.next_message()
    assert info.value.status_hint == 513
    endless = StreamFramer()
    endless.feed(b"INVITE sip:a@b SIP/2.0\r\nX: " + b"a" * 70000)
    with pytest.raises(SipParseError, match="too large"):
        endless.next_message()


# --- properties -------------------------------------------------------------------------------

TOKEN_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789-.!%*_+`'~"
tokens = st.text(alphabet=TOKEN_CHARS, min_size=1, max_size=10)
methods = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=1, max_size=9)
line_text = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\r\n"), max_size=40)
header_values = line_text.map(lambda s: s.strip(" \t"))
extra_names = tokens.filter(
    lambda n: (
        n not in COMPACT_FORMS
        and normalize_name(n)
        not in (
            "content-length",
            "via",
            "from",
            "to",
            "call-id",
            "cseq",
        )
    )
)


@st.composite
def messages(draw: st.DrawFn) -> Request | Response:
    """A well-formed message as the parser would return it (Content-Length last, exact)."""
    is_request = draw(st.booleans())
    method = draw(methods)
    host = draw(tokens)
    items = [
        ("via", f"SIP/2.0/UDP {host}:5060;branch=z9hG4bK{draw(tokens)}"),
        ("from", f"<sip:{draw(tokens)}@{host}>;tag={draw(tokens)}"),
        ("to", f"<sip:{draw(tokens)}@{draw(tokens)}>"),
        ("call-id", draw(tokens)),
        ("cseq", f"{draw(st.integers(0, 2**31 - 1))} {method if is_request else draw(methods)}"),
    ]
    items = draw(st.permutations(items))
    items += draw(st.lists(st.tuples(extra_names, header_values), max_size=6))
    body = draw(st.binary(max_size=300))
    headers = Headers([*items, ("content-length", str(len(body)))])
    if is_request:
        uri = "sip:" + draw(
            st.text(alphabet=st.characters(codec="utf-8", exclude_characters=" \r\n"), max_size=20)
        )
        return Request(method, uri, headers, body)
    reason = draw(line_text.filter(lambda s: s == s.strip()))
    return Response(draw(st.integers(100, 699)), reason, headers, body)


@given(messages())
def test_generated_messages_round_trip(msg: Request | Response) -> None:
    assert parse_message(msg.encode()) == msg


@settings(max_examples=300)
@given(st.binary(max_size=600))
def test_arbitrary_bytes_raise_only_sip_parse_error(data: bytes) -> None:
    try:
        msg = parse_message(data)
    except SipParseError as exc:
        assert exc.reason
    else:
        assert isinstance(msg, Request | Response)


@st.composite
def wire_messages(draw: st.DrawFn) -> bytes:
    """SIP-shaped bytes with the liberties of the wire: compact and odd-case names, folding,
    bare LF, missing or wrong Content-Length, trailing bytes, random text in values."""
    msg = draw(messages())
    lines = [msg.encode().split(b"\r\n", 1)[0].decode()]
    shorts = {long: short for short, long in COMPACT_FORMS.items()}
    for name, value in msg.headers:
        if name == "content-length":
            continue
        shown = draw(
            st.sampled_from([name, name.upper(), canonical_name(name), shorts.get(name, name)])
        )
        if draw(st.booleans()) and " " in value:
            head, _, tail = value.partition(" ")
            value = head + "\r\n" + draw(st.sampled_from([" ", "\t", "   "])) + tail
        colon = draw(st.sampled_from([":", ": ", " : ", ":\t"]))
        lines.append(f"{shown}{colon}{value}")
    length = draw(st.one_of(st.none(), st.integers(0, len(msg.body) + 2)))
    if length is not None:
        lines.append(f"{draw(st.sampled_from(['Content-Length', 'l']))}: {length}")
    if draw(st.integers(0, 9)) == 0:
        index = draw(st.integers(0, len(lines) - 1))
        lines[index] += draw(line_text)
    eol = draw(st.sampled_from(["\r\n", "\n"]))
    head = eol.join(lines).replace("\r\n", eol) + eol + eol
    return head.encode() + msg.body + draw(st.binary(max_size=8))


# Bodies full of line ends: a blank line in the body must never end the head.
line_end_bodies = st.lists(
    st.sampled_from([b"\r\n\r\n", b"\n\n", b"\n\r\n", b"\r\n", b"\n", b"\r", b"v=0"]),
    max_size=6,
).map(b"".join)


@settings(max_examples=150)
@given(messages(), line_end_bodies, st.data())
def test_any_line_end_style_parses_to_the_same_message(
    msg: Request | Response, body: bytes, data: st.DataObject
) -> None:
    headers = msg.headers.set("content-length", str(len(body)))
    if isinstance(msg, Request):
        msg = Request(msg.method, msg.uri, headers, body)
    else:
        msg = Response(msg.status, msg.reason, headers, body)
    lines = msg.encode().split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    head = b"".join(line + data.draw(st.sampled_from([b"\r\n", b"\n"])) for line in lines)
    blank = data.draw(st.sampled_from([b"\r\n", b"\n"]))
    assert parse_message(head + blank + body) == msg


@settings(max_examples=120)
@given(wire_messages())
def test_parse_encode_parse_is_stable(data: bytes) -> None:
    try:
        first = parse_message(data)
    except SipParseError:
        return
    second = parse_message(first.encode())
    assert parse_message(second.encode()) == second
    assert second.encode() == first.encode()
    assert second.body == first.body
    assert second.headers.remove("content-length") == first.headers.remove("content-length")
    if isinstance(first, Request):
        assert isinstance(second, Request)
        assert (second.method, second.uri) == (first.method, first.uri)
    else:
        assert isinstance(second, Response)
        assert (second.status, second.reason) == (first.status, first.reason)


@settings(max_examples=80)
@given(wire_messages(), st.integers(0, 1000), st.binary(min_size=1, max_size=4))
def test_corrupted_messages_raise_only_sip_parse_error(data: bytes, at: int, noise: bytes) -> None:
    at %= len(data) + 1
    corrupted = data[:at] + noise + data[at:]
    try:
        parse_message(corrupted)
    except SipParseError:
        pass


@settings(max_examples=50)
@given(st.lists(st.one_of(wire_messages(), st.binary(max_size=50)), max_size=4), st.integers(1, 64))
def test_framer_on_arbitrary_streams_raises_only_sip_parse_error(
    chunks: list[bytes], size: int
) -> None:
    stream = b"".join(chunks)
    framer = StreamFramer()
    taken = 0
    try:
        for i in range(0, len(stream), size):
            framer.feed(stream[i : i + size])
            while (message := framer.next_message()) is not None:
                taken += len(message)
    except SipParseError:
        return
    assert taken + framer.buffered <= len(stream)
