"""SIP URIs (uri.py) and the transport addresses they lead to (addressing.py)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from voiceplane.sip.addressing import Address, address_of_uri, next_hop
from voiceplane.sip.errors import SipParseError
from voiceplane.sip.uri import SipUri, join_hostport, split_hostport


def test_full_uri() -> None:
    uri = SipUri.parse(
        "sip:alice:secret@atlanta.com:5070;transport=TCP;lr;maddr=1.2.3.4?subject=hi"
    )
    assert uri.scheme == "sip"
    assert (uri.user, uri.password) == ("alice", "secret")
    assert (uri.host, uri.port, uri.effective_port) == ("atlanta.com", 5070, 5070)
    assert uri.params == (("transport", "TCP"), ("lr", None), ("maddr", "1.2.3.4"))
    assert uri.headers == "subject=hi"
    assert uri.transport == "tcp"
    assert uri.param("TRANSPORT") == "TCP"
    assert uri.param("lr") == "" and uri.has_param("lr")
    assert uri.param("ttl") is None and not uri.has_param("ttl")
    assert str(uri) == "sip:alice:secret@atlanta.com:5070;transport=TCP;lr;maddr=1.2.3.4?subject=hi"


def test_minimal_and_default_ports() -> None:
    uri = SipUri.parse("sip:example.com")
    assert (uri.user, uri.host, uri.port, uri.effective_port) == (None, "example.com", None, 5060)
    assert uri.transport == "udp"
    assert SipUri.parse("SIPS:bob@example.com").scheme == "sips"
    assert SipUri.parse("sips:bob@example.com").effective_port == 5061
    assert str(SipUri.parse("sip:example.com")) == "sip:example.com"


def test_telephone_user_with_parameters() -> None:
    # RFC 3261 section 19.1.1 / RFC 4694: ';' is legal in the user part (npdi, rn, tgrp ...).
    uri = SipUri.parse("sip:+15551234567;npdi;rn=+15559999999@sbc.carrier.com:5080;user=phone")
    assert uri.user == "+15551234567;npdi;rn=+15559999999"
    assert (uri.host, uri.port) == ("sbc.carrier.com", 5080)
    assert uri.params == (("user", "phone"),)
    assert address_of_uri(uri) == Address("sbc.carrier.com", 5080)


def test_at_sign_in_user() -> None:
    odd = SipUri.parse("sip:a@b@host.example.com")
    assert (odd.user, odd.host) == ("a@b", "host.example.com")


def test_ipv6_hosts() -> None:
    uri = SipUri.parse("sip:bob@[2001:db8::10]:5062;transport=tcp")
    assert (uri.host, uri.port) == ("[2001:db8::10]", 5062)
    assert str(uri) == "sip:bob@[2001:db8::10]:5062;transport=tcp"
    assert split_hostport("[::1]") == ("[::1]", None)
    assert split_hostport(" host:1 ") == ("host", 1)
    assert join_hostport("h", None) == "h" and join_hostport("h", 7) == "h:7"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "bob@example.com",
        "tel:+15551234567",
        "http://example.com",
        "sip:",
        "sip:bob@",
        "sip:bob@:5060",
        "sip:bob@host:0",
        "sip:bob@host:70000",
        "sip:bob@host:50a",
        "sip:bob@host:\u00b2",
        "sip:bob@host:\u0665\u0660\u0666\u0660",
        "sip:bob@[::1",
        "sip:bob@[::1]:x",
        "sip:bob@[::1]5060",
        "sip:bob@ho st",
        'sip:bob@ho"st',
    ],
)
def test_bad_uris(text: str) -> None:
    with pytest.raises(SipParseError):
        SipUri.parse(text)


@pytest.mark.parametrize(
    "text",
    [
        "sip:example.com",
        "sip:alice@example.com",
        "sip:alice:pw@10.0.0.1:5060",
        "sips:bob@[::1]:5061;transport=tls",
        "sip:100@pbx.example.com;user=phone;lr?Subject=x&Priority=urgent",
        "sip:+1555;tgrp=TG-1;trunk-context=example.com@gw.example.com;user=phone",
    ],
)
def test_str_round_trips(text: str) -> None:
    assert str(SipUri.parse(text)) == text
    assert SipUri.parse(str(SipUri.parse(text))) == SipUri.parse(text)


@given(st.text(max_size=60))
def test_arbitrary_text_raises_only_sip_parse_error(text: str) -> None:
    try:
        uri = SipUri.parse(text)
    except SipParseError:
        return
    assert 0 < uri.effective_port < 65536


# --- addressing --------------------------------------------------------------------------


def test_address() -> None:
    udp = Address("10.0.0.1", 5060)
    assert udp.transport == "udp" and not udp.reliable and udp.via_transport == "UDP"
    tcp = Address("10.0.0.1", 5060, "tcp")
    assert tcp.reliable and tcp.via_transport == "TCP" and udp != tcp
    assert Address("h", 1, "tls").reliable
    assert str(tcp) == "10.0.0.1:5060;transport=tcp"
    assert str(Address("::1", 5060)) == "[::1]:5060;transport=udp"


def test_address_of_uri() -> None:
    assert address_of_uri(SipUri.parse("sip:bob@10.0.0.2")) == Address("10.0.0.2", 5060, "udp")
    assert address_of_uri(SipUri.parse("sip:bob@10.0.0.2:5080;transport=TCP")) == Address(
        "10.0.0.2", 5080, "tcp"
    )
    assert address_of_uri(SipUri.parse("sips:[::1]"), "tls") == Address("::1", 5061, "tls")


def test_next_hop_prefers_the_first_route() -> None:
    target = "sip:bob@10.0.0.2:5062"
    assert next_hop((), target, "udp") == Address("10.0.0.2", 5062, "udp")
    routes = ("<sip:proxy.example.com:5070;lr;transport=tcp>", "<sip:p2.example.com;lr>")
    assert next_hop(routes, target, "udp") == Address("proxy.example.com", 5070, "tcp")
