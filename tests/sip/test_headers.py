"""Structured header values (headers.py): Via, NameAddr, CSeq, Reason, comma lists, params."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voiceplane.sip.errors import SipParseError
from voiceplane.sip.headers import (
    CSeq,
    NameAddr,
    Reason,
    Via,
    format_params,
    get_param,
    parse_params,
    q850_cause_from_reasons,
    split_commas,
    tag_of,
    with_param,
    without_tag,
)

# --- comma lists and parameters ------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "parts"),
    [
        ("", []),
        ("  ", []),
        ("a", ["a"]),
        ("a, b ,c", ["a", "b", "c"]),
        ("a,,b,", ["a", "b"]),
        ('"Doe, John" <sip:j@x>, <sip:k@y>', ['"Doe, John" <sip:j@x>', "<sip:k@y>"]),
        ('"say \\"hi, there\\"" <sip:a@b>, c', ['"say \\"hi, there\\"" <sip:a@b>', "c"]),
        ("<sip:a@b;x=1,2>;q=1, <sip:c@d>", ["<sip:a@b;x=1,2>;q=1", "<sip:c@d>"]),
        ("INVITE, ACK,CANCEL", ["INVITE", "ACK", "CANCEL"]),
    ],
)
def test_split_commas(value: str, parts: list[str]) -> None:
    assert split_commas(value) == parts


def test_params_parse_format_and_lookup() -> None:
    params = parse_params(';Branch=z9hG4bK1 ; rport;text="a;b=c";lr')
    assert params == (("branch", "z9hG4bK1"), ("rport", None), ("text", '"a;b=c"'), ("lr", None))
    assert get_param(params, "branch") == "z9hG4bK1"
    assert get_param(params, "rport") == ""  # a flag is present, with no value
    assert get_param(params, "received") is None
    assert format_params(params) == ';branch=z9hG4bK1;rport;text="a;b=c";lr'
    updated = with_param(params, "rport", "5060")
    assert get_param(updated, "rport") == "5060" and updated[-1] == ("rport", "5060")
    assert parse_params("") == ()
    with pytest.raises(SipParseError, match="empty parameter name"):
        parse_params(";=1")


# --- Via -------------------------------------------------------------------------------------


def test_via_parse_and_str() -> None:
    via = Via.parse(
        "SIP/2.0/udp pc33.example.com:5066;branch=z9hG4bKnashds8;rport;received=1.2.3.4"
    )
    assert (via.transport, via.host, via.port) == ("UDP", "pc33.example.com", 5066)
    assert via.branch == "z9hG4bKnashds8"
    assert via.rport == ""
    assert get_param(via.params, "received") == "1.2.3.4"
    assert str(via) == (
        "SIP/2.0/UDP pc33.example.com:5066;branch=z9hG4bKnashds8;rport;received=1.2.3.4"
    )
    assert Via.parse(str(via)) == via


def test_via_variants() -> None:
    assert Via.parse("SIP/2.0/TCP host").port is None
    assert Via.parse("SIP/2.0/TCP host").branch is None
    v6 = Via.parse("SIP/2.0/TLS [2001:db8::1]:5061;branch=z9hG4bKx")
    assert (v6.transport, v6.host, v6.port) == ("TLS", "[2001:db8::1]", 5061)
    assert str(v6) == "SIP/2.0/TLS [2001:db8::1]:5061;branch=z9hG4bKx"
    spaced = Via.parse("  SIP/2.0/UDP   10.0.0.1:5060 ;branch=z9hG4bKs ; rport=5070  ")
    assert (spaced.host, spaced.port, spaced.branch, spaced.rport) == (
        "10.0.0.1",
        5060,
        "z9hG4bKs",
        "5070",
    )


@pytest.mark.parametrize(
    "text",
    [
        "",
        "SIP/2.0 host",
        "HTTP/1.1/TCP host",
        "SIP/2.0/ host",
        "SIP/2.0/UDP",
        "SIP/2.0/UDP host:0",
        "SIP/2.0/UDP host:65536",
        "SIP/2.0/UDP host:50x",
        "SIP/2.0/UDP host:\u00b2",
        "SIP/2.0/UDP [::1",
        "SIP/2.0/UDP [::1]x",
        "SIP/2.0/UDP a<b",
    ],
)
def test_via_errors(text: str) -> None:
    with pytest.raises(SipParseError):
        Via.parse(text)


# --- NameAddr --------------------------------------------------------------------------------


def test_name_addr_with_display_name_and_tag() -> None:
    addr = NameAddr.parse('"Alice Liddell" <sip:alice@example.com;transport=tcp>;tag=88sja8x;x')
    assert addr.display == '"Alice Liddell"'
    assert addr.uri == "sip:alice@example.com;transport=tcp"  # URI parameters stay in the URI
    assert addr.params == (("tag", "88sja8x"), ("x", None))
    assert addr.tag == "88sja8x"
    assert addr.bracketed
    assert str(addr) == '"Alice Liddell" <sip:alice@example.com;transport=tcp>;tag=88sja8x;x'
    assert NameAddr.parse(str(addr)) == addr


def test_name_addr_without_brackets_gives_every_param_to_the_header() -> None:
    addr = NameAddr.parse("sip:bob@example.com;tag=xyz;user=phone")
    assert addr.uri == "sip:bob@example.com"
    assert addr.tag == "xyz" and get_param(addr.params, "user") == "phone"
    assert not addr.bracketed
    assert str(addr) == "<sip:bob@example.com>;tag=xyz;user=phone"


def test_name_addr_with_tag() -> None:
    addr = NameAddr.parse("Bob <sip:bob@example.com>")
    assert addr.tag is None and addr.display == "Bob"
    tagged = addr.with_tag("t1")
    assert tagged.tag == "t1" and str(tagged) == "Bob <sip:bob@example.com>;tag=t1"
    assert tagged.with_tag("t2").params == (("tag", "t2"),)
    assert NameAddr.parse("<tel:+15551234567>").uri == "tel:+15551234567"


@pytest.mark.parametrize(
    "text", ["", "   ", "<sip:a@b", "<sip:a@b> junk", "<nocolon>", "<sip:a b@c>", "plain"]
)
def test_name_addr_errors(text: str) -> None:
    with pytest.raises(SipParseError):
        NameAddr.parse(text)


@pytest.mark.parametrize(
    ("value", "tag"),
    [
        ('"Bob" <sip:bob@x>;tag=abc', "abc"),
        ("<sip:bob@x>;TAG=abc;other=1", "abc"),
        ("sip:bob@x;tag=abc", "abc"),
        ("<sip:bob@x;tag=in-the-uri>", None),
        ("<sip:bob@x>", None),
        ("<sip:bob@x>;xtag=1", None),
        ("<sip:bob@x> ; tag = spaced", "spaced"),
    ],
)
def test_tag_of_agrees_with_name_addr(value: str, tag: str | None) -> None:
    assert tag_of(value) == tag == NameAddr.parse(value).tag


@pytest.mark.parametrize(
    ("value", "tag"),
    [
        ('<sip:a@b>;x="y;tag=evil";tag=real', "real"),
        ('<sip:a@b>;tag=real;x="q>r"', "real"),
        ('<sip:a@b>;x="1>2;tag=evil"', None),
        ('"a>b;tag=evil" <sip:a@b>;tag=real', "real"),
        ('"say \\"hi\\" >;tag=evil" <sip:a@b>;tag=real', "real"),
        ('"Rec <100>" <sip:100@pbx>;tag=real', "real"),
        ('sip:a@b;x="<>;tag=evil";tag=real', "real"),
    ],
)
def test_tag_of_is_not_fooled_by_quotes(value: str, tag: str | None) -> None:
    assert tag_of(value) == tag == NameAddr.parse(value).tag


@pytest.mark.parametrize(
    "value",
    [
        '"Bob" <sip:bob@x>;tag=abc;foo=1',
        "sip:bob@x;tag=1;user=phone",
        "<sip:a@b> ;tag=1",
        "<sip:a@b>",
    ],
)
def test_without_tag(value: str) -> None:
    stripped = NameAddr.parse(without_tag(value))
    original = NameAddr.parse(value)
    assert stripped.tag is None
    assert stripped.uri == original.uri and stripped.display == original.display
    assert stripped.params == tuple(p for p in original.params if p[0] != "tag")


# --- CSeq and Reason -------------------------------------------------------------------------


def test_cseq() -> None:
    cseq = CSeq.parse("  4711   INVITE ")
    assert (cseq.number, cseq.method) == (4711, "INVITE")
    assert str(cseq) == "4711 INVITE"
    assert CSeq.parse("0 ACK").number == 0
    assert CSeq.parse(f"{2**31 - 1} BYE").number == 2**31 - 1


@pytest.mark.parametrize(
    "text",
    [
        "",
        "INVITE",
        "1",
        "-1 INVITE",
        "x INVITE",
        "2147483648 BYE",
        "12345678901 BYE",
        "\u00b2 INVITE",
        "\u0661 INVITE",
    ],
)
def test_cseq_errors(text: str) -> None:
    with pytest.raises(SipParseError):
        CSeq.parse(text)


def test_reason() -> None:
    reason = Reason.parse('Q.850 ;cause=17 ;text="User busy"')
    assert (reason.protocol, reason.cause, reason.text) == ("Q.850", 17, "User busy")
    sip = Reason.parse('SIP;cause=200;text="Call completed elsewhere"')
    assert (sip.protocol, sip.cause, sip.text) == ("SIP", 200, "Call completed elsewhere")
    assert Reason.parse("Q.850").cause is None
    for bad in ("Q.850;cause=abc", "Q.850;cause=12345", "Q.850;cause=\u00b2", "Q.850;cause=-1"):
        with pytest.raises(SipParseError):
            Reason.parse(bad)


def test_q850_cause_from_reasons() -> None:
    assert q850_cause_from_reasons(["SIP;cause=487", "Q.850;cause=16", "Q.850;cause=17"]) == 16
    assert q850_cause_from_reasons(["q.850;cause=145"]) == 145 & 0x7F  # masked to 7 bits
    assert (
        q850_cause_from_reasons(["Q.850;cause=bad", "Q.850;cause=\u00b2", "Q.850;cause=31"]) == 31
    )
    assert q850_cause_from_reasons(["Q.850", "SIP;cause=200"]) is None
    assert q850_cause_from_reasons([]) is None


# --- properties ------------------------------------------------------------------------------

PARSERS: list[Callable[[str], object]] = [
    Via.parse,
    NameAddr.parse,
    CSeq.parse,
    Reason.parse,
    parse_params,
    split_commas,
    tag_of,
    without_tag,
]


@settings(max_examples=150)
@given(st.sampled_from(PARSERS), st.text(max_size=60))
def test_header_parsers_raise_only_sip_parse_error(
    parser: Callable[[str], object], text: str
) -> None:
    try:
        parser(text)
    except SipParseError:
        pass


hosts = st.one_of(
    st.from_regex(r"[a-z][a-z0-9\-]{0,10}(\.[a-z][a-z0-9]{0,5}){0,3}", fullmatch=True),
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(lambda a: f"[{a}]"),
)
param_names = st.from_regex(r"[a-z][a-z0-9\-]{0,8}", fullmatch=True)
param_values = st.one_of(st.none(), st.from_regex(r"[A-Za-z0-9.\-]{1,12}", fullmatch=True))


@settings(max_examples=60)
@given(
    st.sampled_from(["UDP", "TCP", "TLS", "WS"]),
    hosts,
    st.one_of(st.none(), st.integers(1, 65535)),
    st.lists(st.tuples(param_names, param_values), max_size=4),
)
def test_via_round_trips(
    transport: str, host: str, port: int | None, params: list[tuple[str, str | None]]
) -> None:
    via = Via(transport, host, port, tuple(params))
    assert Via.parse(str(via)) == via


@settings(max_examples=60)
@given(
    st.one_of(st.none(), st.from_regex(r'"[A-Za-z ,;<>]{0,12}"', fullmatch=True)),
    hosts,
    st.lists(st.tuples(param_names, param_values), max_size=3),
)
def test_name_addr_round_trips(
    display: str | None, host: str, params: list[tuple[str, str | None]]
) -> None:
    addr = NameAddr(f"sip:user@{host}", display, tuple(params))
    assert NameAddr.parse(str(addr)) == addr


# Quoted strings as a peer may send them: "<", ">", ";", "=" and escaped quotes inside.
quoted = st.lists(
    st.one_of(st.sampled_from([";tag=evil", ">", "<", ";", "=", " ", '\\"', "tag"]),
              st.from_regex(r"[A-Za-z0-9]{1,4}", fullmatch=True)),
    max_size=6,
).map(lambda parts: '"' + "".join(parts) + '"')  # fmt: skip
address_params = st.lists(
    st.tuples(
        st.one_of(param_names, st.just("tag")),
        st.one_of(param_values, quoted),
        st.sampled_from([";", " ;", "; ", " ; "]),
    ),
    max_size=4,
)


@settings(max_examples=300)
@given(
    st.one_of(st.none(), st.just("Alice"), quoted),
    hosts,
    st.sampled_from(["", ";transport=tcp", ";tag=in-the-uri"]),
    st.booleans(),
    address_params,
)
def test_tag_of_and_without_tag_agree_with_name_addr_on_quoted_params(
    display: str | None,
    host: str,
    uri_params: str,
    bracketed: bool,
    params: list[tuple[str, str | None, str]],
) -> None:
    uri = f"sip:user@{host}"
    tail = "".join(sep + name + ("" if v is None else f"={v}") for name, v, sep in params)
    if display is not None or bracketed:
        value = f"{display or ''} <{uri}{uri_params}>{tail}".lstrip()
    else:
        value = uri + tail  # an addr-spec: its ";" params are the header's
    tags = [v for name, v, _ in params if name == "tag"]
    expected = None if not tags else (tags[0] or "")
    original = NameAddr.parse(value)
    assert original.tag == expected
    assert tag_of(value) == expected
    stripped = NameAddr.parse(without_tag(value))
    assert (stripped.uri, stripped.display) == (original.uri, original.display)
    assert stripped.params == tuple(p for p in original.params if p[0] != "tag")
