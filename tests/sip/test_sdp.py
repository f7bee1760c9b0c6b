"""SDP: real-world bodies, offer/answer (RFC 3264), hold, round trips and fuzzing."""

from __future__ import annotations

import string
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voiceplane.sip.errors import SipParseError
from voiceplane.sip.sdp import (
    DEFAULT_CODECS,
    DIRECTIONS,
    INACTIVE,
    PCMA,
    PCMU,
    RECVONLY,
    SENDONLY,
    SENDRECV,
    STATIC_PAYLOAD_TYPES,
    TELEPHONE_EVENT,
    Codec,
    MediaDescription,
    SessionDescription,
    answer_to,
    bump_version,
    format_events,
    make_answer,
    make_offer,
    negotiate,
    negotiated_codec,
    parse_events,
    under_origin,
    with_direction,
)


def sdp(*lines: str, eol: str = "\r\n") -> bytes:
    return (eol.join(lines) + eol).encode()


def answer(
    offer: SessionDescription,
    *,
    direction: str | None = None,
    supported: tuple[Codec, ...] = DEFAULT_CODECS,
) -> SessionDescription:
    return make_answer(
        offer,
        address="192.0.2.1",
        port=40000,
        session_id=99,
        direction=direction,
        supported=supported,
    )


def offer_with(*media_lines: str, connection: str = "198.51.100.7") -> SessionDescription:
    return SessionDescription.parse(
        sdp(
            "v=0",
            "o=- 1 1 IN IP4 198.51.100.7",
            "s=-",
            f"c=IN IP4 {connection}",
            "t=0 0",
            *media_lines,
        )
    )


# --- real-world bodies -------------------------------------------------------------------

SIPP_OFFER = (
    "v=0",
    "o=user1 53655765 2353687637 IN IP4 127.0.0.1",
    "s=-",
    "c=IN IP4 127.0.0.1",
    "t=0 0",
    "m=audio 6000 RTP/AVP 0",
    "a=rtpmap:0 PCMU/8000",
)

ASTERISK_OFFER = (
    "v=0",
    "o=- 1925036384 1925036384 IN IP4 192.168.1.10",
    "s=Asterisk",
    "c=IN IP4 192.168.1.10",
    "t=0 0",
    "m=audio 17958 RTP/AVP 0 8 3 111 101",
    "a=rtpmap:0 PCMU/8000",
    "a=rtpmap:8 PCMA/8000",
    "a=rtpmap:3 GSM/8000",
    "a=rtpmap:111 G726-32/8000",
    "a=rtpmap:101 telephone-event/8000",
    "a=fmtp:101 0-16",
    "a=ptime:20",
    "a=maxptime:150",
    "a=sendrecv",
)

FREESWITCH_OFFER = (
    "v=0",
    "o=FreeSWITCH 1680000000 1680000001 IN IP4 203.0.113.5",
    "s=FreeSWITCH",
    "c=IN IP4 203.0.113.5",
    "t=0 0",
    "m=audio 24680 RTP/AVP 9 8 0 18 101 13",
    "a=rtpmap:9 G722/8000",
    "a=rtpmap:8 PCMA/8000",
    "a=rtpmap:0 PCMU/8000",
    "a=rtpmap:18 G729/8000",
    "a=fmtp:18 annexb=no",
    "a=rtpmap:101 telephone-event/8000",
    "a=fmtp:101 0-16",
    "a=rtpmap:13 CN/8000",
    "a=ptime:30",
    "a=sendrecv",
    "a=rtcp:24681 IN IP4 203.0.113.5",
)

# pjsip-style, IPv6, no session-level c=, bandwidth lines, a dynamic telephone-event PT.
PJSIP_IPV6_OFFER = (
    "v=0",
    "o=- 3784977145 3784977145 IN IP6 2001:db8::10",
    "s=pjmedia",
    "b=AS:84",
    "t=0 0",
    "a=X-nat:0",
    "m=audio 4000 RTP/AVP 8 96",
    "c=IN IP6 2001:db8::20",
    "b=TIAS:64000",
    "a=rtcp:4001 IN IP6 2001:db8::20",
    "a=sendrecv",
    "a=rtpmap:8 PCMA/8000",
    "a=rtpmap:96 telephone-event/8000",
    "a=fmtp:96 0-15",
)

# Linphone-style: opus first, then G.711, and a video stream.
AUDIO_VIDEO_OFFER = (
    "v=0",
    "o=alice 2890 2890 IN IP4 10.1.1.2",
    "s=Talk",
    "c=IN IP4 10.1.1.2",
    "t=0 0",
    "m=audio 7078 RTP/AVP 96 0 8 101",
    "a=rtpmap:96 opus/48000/2",
    "a=fmtp:96 useinbandfec=1",
    "a=rtpmap:101 telephone-event/8000",
    "m=video 9078 RTP/AVP 97 98",
    "a=rtpmap:97 VP8/90000",
    "a=rtpmap:98 H264/90000",
    "a=fmtp:98 profile-level-id=42801F",
)


@pytest.mark.parametrize("eol", ["\r\n", "\n"])
def test_sipp_offer(eol: str) -> None:
    offer = SessionDescription.parse(sdp(*SIPP_OFFER, eol=eol))
    assert offer.origin_username == "user1"
    assert offer.session_id == 53655765
    assert offer.session_version == 2353687637
    assert offer.address == "127.0.0.1"
    assert offer.connection == "127.0.0.1"
    assert offer.session_name == "-"
    audio = offer.audio
    assert audio is not None
    assert (audio.media, audio.port, audio.protocol) == ("audio", 6000, "RTP/AVP")
    assert audio.formats == (0,)
    assert audio.codecs == (PCMU,)
    assert audio.direction == SENDRECV
    assert audio.ptime == 20
    assert offer.rtp_address() == ("127.0.0.1", 6000)
    assert offer.telephone_event_pt is None
    assert not offer.on_hold


def test_sipp_offer_without_rtpmap_knows_static_types() -> None:
    offer = SessionDescription.parse(sdp(*SIPP_OFFER[:5], "m=audio 6000 RTP/AVP 0 8"))
    assert offer.audio is not None
    assert offer.audio.codecs == (PCMU, PCMA)


def test_asterisk_offer() -> None:
    offer = SessionDescription.parse(sdp(*ASTERISK_OFFER))
    audio = offer.audio
    assert audio is not None
    assert audio.formats == (0, 8, 3, 111, 101)
    assert [c.name for c in audio.codecs] == ["PCMU", "PCMA", "GSM", "G726-32", "telephone-event"]
    assert audio.codec(101) == Codec(101, "telephone-event", 8000, fmtp="0-16")
    assert audio.telephone_event == audio.codec(101)
    assert offer.telephone_event_pt == 101
    assert audio.attributes == (("ptime", "20"), ("maxptime", "150"))
    assert audio.attribute("maxptime") == "150"
    assert audio.ptime == 20
    assert offer.session_name == "Asterisk"


def test_freeswitch_offer() -> None:
    offer = SessionDescription.parse(sdp(*FREESWITCH_OFFER))
    audio = offer.audio
    assert audio is not None
    assert audio.codec(18) == Codec(18, "G729", 8000, fmtp="annexb=no")
    assert audio.codec(13) == Codec(13, "CN", 8000)
    assert audio.ptime == 30
    assert audio.attribute("rtcp") == "24681 IN IP4 203.0.113.5"
    assert [c.payload_type for c in audio.voice_codecs] == [9, 8, 0, 18, 13]


def test_ipv6_media_level_connection() -> None:
    offer = SessionDescription.parse(sdp(*PJSIP_IPV6_OFFER))
    assert offer.address_type == "IP6"
    assert offer.address == "2001:db8::10"
    assert offer.connection is None
    assert offer.attributes == (("X-nat", "0"),)
    audio = offer.audio
    assert audio is not None
    assert audio.connection == "2001:db8::20"
    assert offer.rtp_address() == ("2001:db8::20", 4000)
    assert offer.telephone_event_pt == 96
    assert audio.codec(96) == Codec(96, "telephone-event", 8000, fmtp="0-15")


def test_media_level_connection_overrides_session_level() -> None:
    offer = offer_with("m=audio 5004 RTP/AVP 0", "c=IN IP4 203.0.113.99")
    assert offer.connection == "198.51.100.7"
    assert offer.rtp_address() == ("203.0.113.99", 5004)


def test_multicast_ttl_is_not_part_of_the_host() -> None:
    offer = offer_with("m=audio 5004 RTP/AVP 0", "c=IN IP4 224.2.1.1/127")
    assert offer.rtp_address() == ("224.2.1.1", 5004)


def test_rtpmap_channels_and_case_insensitive_names() -> None:
    offer = SessionDescription.parse(sdp(*AUDIO_VIDEO_OFFER))
    audio = offer.audio
    assert audio is not None
    assert audio.codec(96) == Codec(96, "opus", 48000, channels=2, fmtp="useinbandfec=1")
    assert Codec(0, "pcmu", 8000).same_format(PCMU)
    assert not Codec(0, "PCMU", 16000).same_format(PCMU)


def test_dynamic_payload_type_without_rtpmap_has_no_codec() -> None:
    offer = offer_with("m=audio 5004 RTP/AVP 0 97", "a=fmtp:97 mode=30")
    assert offer.audio is not None
    assert offer.audio.formats == (0, 97)
    assert offer.audio.codecs == (PCMU,)


def test_rtpmap_for_a_format_not_offered_is_ignored() -> None:
    offer = offer_with("m=audio 5004 RTP/AVP 0", "a=rtpmap:96 opus/48000/2")
    assert offer.audio is not None
    assert offer.audio.codecs == (PCMU,)


def test_session_level_direction_applies_to_streams_without_one() -> None:
    offer = SessionDescription.parse(
        sdp(
            *SIPP_OFFER[:5],
            "a=sendonly",
            "m=audio 6000 RTP/AVP 0",
            "m=audio 6002 RTP/AVP 0",
            "a=inactive",
        )
    )
    assert [m.direction for m in offer.media] == [SENDONLY, INACTIVE]
    assert offer.attributes == ()


def test_non_rtp_stream_keeps_its_formats_verbatim() -> None:
    offer = offer_with("m=image 6000 udptl t38", "a=T38FaxVersion:0", "a=T38FaxRateManagement")
    (image,) = offer.media
    assert image.raw_formats == ("t38",)
    assert image.formats == () and image.codecs == ()
    assert image.attributes == (("T38FaxVersion", "0"), ("T38FaxRateManagement", None))
    assert SessionDescription.parse(offer.encode()) == offer


def test_port_count_and_tolerated_oddities() -> None:
    offer = SessionDescription.parse(
        b"v=0\no=- 1 1 IN IP4 10.0.0.1\nc=IN IP4 10.0.0.1\n\nm=audio 49170/2  RTP/AVP  0 \n"
        b"a=ptime: 20.0\n\n\n"
    )
    audio = offer.audio
    assert audio is not None
    assert (audio.port, audio.port_count, audio.formats) == (49170, 2, (0,))
    assert audio.ptime == 20
    assert offer.session_name == "-"  # s= missing altogether
    assert b"m=audio 49170/2 RTP/AVP 0\r\n" in offer.encode()


def test_latin1_text_is_readable() -> None:
    body = sdp(*SIPP_OFFER).replace(b"s=-", "s=Réunion".encode("latin-1"))
    assert SessionDescription.parse(body).session_name == "Réunion"


def test_encode_uses_crlf_and_a_canonical_order() -> None:
    offer = make_offer(address="192.0.2.10", port=30000, session_id=42)
    text = offer.encode()
    assert text.endswith(b"\r\n")
    assert b"\n" not in text.replace(b"\r\n", b"")
    assert text.decode().split("\r\n")[:-1] == [
        "v=0",
        "o=- 42 1 IN IP4 192.0.2.10",
        "s=-",
        "c=IN IP4 192.0.2.10",
        "t=0 0",
        "m=audio 30000 RTP/AVP 0 8 101",
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:8 PCMA/8000",
        "a=rtpmap:101 telephone-event/8000",
        "a=fmtp:101 0-16",
        "a=ptime:20",
        "a=sendrecv",
    ]


def test_encode_refuses_line_injection() -> None:
    offer = make_offer(address="192.0.2.10", port=30000, session_id=42)
    with pytest.raises(ValueError):
        replace(offer, session_name="x\r\na=evil").encode()


# --- malformed input ---------------------------------------------------------------------

HEAD = ("v=0", "o=- 1 1 IN IP4 10.0.0.1", "s=-", "c=IN IP4 10.0.0.1", "t=0 0")


@pytest.mark.parametrize(
    ("lines", "status"),
    [
        ((), 400),
        (("o=- 1 1 IN IP4 10.0.0.1", "s=-"), 400),  # no v=
        (("v=1", *HEAD[1:]), 400),
        (("v=0", "s=-", "c=IN IP4 10.0.0.1"), 400),  # no o=
        (("v=0", "o=- 1 IN IP4 10.0.0.1"), 400),
        (("v=0", "o=- x 1 IN IP4 10.0.0.1"), 400),
        (("v=0", "o=- ١ 1 IN IP4 10.0.0.1"), 400),  # Arabic-Indic digit
        (("v=0", "o=- 1 1 ATM NSAP 47.0005"), 488),
        ((*HEAD, "v=0"), 400),
        ((*HEAD, "x=unknown"), 488),
        ((*HEAD, "A=sendrecv"), 400),
        ((*HEAD, "just text"), 400),
        ((*HEAD, " a=sendrecv"), 400),
        ((*HEAD, "c=IN IP4"), 400),
        ((*HEAD, "m=audio"), 400),
        ((*HEAD, "m=audio 6000 RTP/AVP"), 400),
        ((*HEAD, "m=audio 70000 RTP/AVP 0"), 400),
        ((*HEAD, "m=audio 6000/0 RTP/AVP 0"), 400),
        ((*HEAD, "m=audio -1 RTP/AVP 0"), 400),
        ((*HEAD, "m=audio 6000 RTP/AVP PCMU"), 400),
        ((*HEAD, "m=audio 6000 RTP/AVP 128"), 400),
        ((*HEAD, "m=audio 6000 RTP/AVP 0", "a=rtpmap:0 PCMU"), 400),
        ((*HEAD, "m=audio 6000 RTP/AVP 0", "a=rtpmap:0 PCMU/0"), 400),
        ((*HEAD, "m=audio 6000 RTP/AVP 0", "a=rtpmap:200 PCMU/8000"), 400),
        ((*HEAD, "m=audio 6000 RTP/AVP 0", "a=fmtp:x 0-15"), 400),
        ((*HEAD, "m=audio 6000 RTP/AVP 0", "a=bad name"), 400),
        ((*HEAD, "m=audio 6000 RTP/AVP 0", "a="), 400),
        (("v=0", "o=- 1 1 IN IP4 10.0.0.1", "s=-", "t=0 0", "m=audio 6000 RTP/AVP 0"), 400),
    ],
)
def test_malformed(lines: tuple[str, ...], status: int) -> None:
    with pytest.raises(SipParseError) as info:
        SessionDescription.parse(sdp(*lines) if lines else b"")
    assert info.value.status_hint == status


def test_stray_cr_and_nul_are_malformed() -> None:
    for body in (b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\rs=-\r\n", b"v=0\r\ns=a\0b\r\n"):
        with pytest.raises(SipParseError):
            SessionDescription.parse(body)


def test_disabled_stream_needs_no_connection_nor_formats() -> None:
    offer = SessionDescription.parse(
        sdp("v=0", "o=- 1 1 IN IP4 10.0.0.1", "s=-", "t=0 0", "m=audio 0 RTP/AVP")
    )
    assert offer.rtp_address() is None
    assert offer.media[0].rejected


# --- offer/answer ------------------------------------------------------------------------


def test_make_offer() -> None:
    offer = make_offer(address="192.0.2.10", port=30000, session_id=42, session_version=7)
    assert offer.session_version == 7
    audio = offer.audio
    assert audio is not None
    assert audio.codecs == DEFAULT_CODECS
    assert audio.formats == (0, 8, 101)
    assert offer.rtp_address() == ("192.0.2.10", 30000)
    assert SessionDescription.parse(offer.encode()) == offer


def test_make_offer_ipv6_and_options() -> None:
    offer = make_offer(
        address="2001:db8::1",
        port=30000,
        session_id=1,
        codecs=(PCMA, replace(TELEPHONE_EVENT, payload_type=96)),
        direction=SENDONLY,
        ptime=None,
    )
    assert offer.address_type == "IP6"
    assert b"c=IN IP6 2001:db8::1\r\n" in offer.encode()
    assert offer.audio is not None
    assert offer.audio.attributes == ()
    assert offer.audio.direction == SENDONLY


@pytest.mark.parametrize(
    "kwargs",
    [
        {"port": 70000},
        {"direction": "sideways"},
        {"codecs": (PCMU, replace(PCMA, payload_type=0))},
    ],
)
def test_make_offer_rejects_nonsense(kwargs: dict[str, object]) -> None:
    arguments: dict[str, object] = {"address": "192.0.2.1", "port": 4000, "session_id": 1}
    arguments.update(kwargs)
    with pytest.raises(ValueError):
        make_offer(**arguments)  # type: ignore[arg-type]


def test_answer_to_sipp() -> None:
    offer = SessionDescription.parse(sdp(*SIPP_OFFER))
    ans = answer(offer)
    assert ans.session_id == 99
    assert ans.connection == "192.0.2.1"
    audio = ans.audio
    assert audio is not None
    assert audio.port == 40000
    assert audio.codecs == (PCMU,)  # no telephone-event: the offer had none
    assert audio.direction == SENDRECV
    assert SessionDescription.parse(ans.encode()) == ans


def test_answer_picks_codecs_in_offerer_order() -> None:
    offer = SessionDescription.parse(sdp(*FREESWITCH_OFFER))
    ans = answer(offer)
    audio = ans.audio
    assert audio is not None
    # G722, G729 and CN are not ours; PCMA comes before PCMU because the offerer said so.
    assert audio.codecs == (PCMA, PCMU, TELEPHONE_EVENT)
    assert audio.formats == (8, 0, 101)
    assert negotiated_codec(ans, offer) == PCMA


def test_answer_keeps_the_offerers_telephone_event_number() -> None:
    offer = offer_with(
        "m=audio 5004 RTP/AVP 0 96",
        "a=rtpmap:96 telephone-event/8000",
        "a=fmtp:96 0-15",
    )
    ans = answer(offer)
    assert ans.audio is not None
    assert ans.audio.codecs == (PCMU, Codec(96, "telephone-event", 8000, fmtp="0-15"))
    assert ans.telephone_event_pt == 96
    encoded = ans.encode()
    assert b"a=rtpmap:96 telephone-event/8000\r\na=fmtp:96 0-15\r\n" in encoded
    assert b"101" not in encoded


def test_answer_event_list_is_the_common_events() -> None:
    offer = offer_with("m=audio 5004 RTP/AVP 0 101", "a=rtpmap:101 telephone-event/8000")
    ans = answer(offer)
    assert ans.audio is not None
    # No fmtp in the offer means 0-15, and we do not claim more than both know.
    assert ans.audio.codec(101) == Codec(101, "telephone-event", 8000, fmtp="0-15")


def test_telephone_event_at_another_rate_is_not_kept() -> None:
    offer = offer_with(
        "m=audio 5004 RTP/AVP 111 0 110",
        "a=rtpmap:111 opus/48000/2",
        "a=rtpmap:110 telephone-event/48000",
    )
    ans = answer(offer)
    assert ans.audio is not None
    assert ans.audio.codecs == (PCMU,)


def test_answer_rejects_video_in_place() -> None:
    video_first = (
        *AUDIO_VIDEO_OFFER[:5],
        *AUDIO_VIDEO_OFFER[9:],
        *AUDIO_VIDEO_OFFER[5:9],
    )
    for lines in (AUDIO_VIDEO_OFFER, video_first):
        offer = SessionDescription.parse(sdp(*lines))
        ans = answer(offer)
        assert [m.media for m in ans.media] == [m.media for m in offer.media]
        video = next(m for m in ans.media if m.media == "video")
        assert video.port == 0
        assert video.formats == (97, 98)
        audio = next(m for m in ans.media if m.media == "audio")
        assert audio.port == 40000
        assert audio.codecs == (PCMU, PCMA, Codec(101, "telephone-event", 8000, fmtp="0-15"))
        assert b"m=video 0 RTP/AVP 97 98\r\n" in ans.encode()
        assert ans.rtp_address() == ("192.0.2.1", 40000)
        assert SessionDescription.parse(ans.encode()) == ans


def test_only_one_audio_stream_is_accepted() -> None:
    offer = offer_with(
        "m=audio 5004 RTP/SAVP 0",
        "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz",
        "m=audio 5006 RTP/AVP 8",
        "m=audio 5008 RTP/AVP 0",
    )
    ans = answer(offer)
    assert [m.port for m in ans.media] == [0, 40000, 0]
    assert ans.audio is ans.media[1]
    result = negotiate(ans, offer)
    assert result is not None
    assert (result.index, result.remote_port, result.codec) == (1, 5006, PCMA)


@pytest.mark.parametrize(
    "media",
    [
        ("m=audio 5004 RTP/AVP 18", "a=rtpmap:18 G729/8000"),
        ("m=audio 5004 RTP/AVP 101", "a=rtpmap:101 telephone-event/8000"),
        ("m=audio 5004 RTP/SAVP 0",),
        ("m=audio 0 RTP/AVP 0",),
        ("m=video 5004 RTP/AVP 31",),
        ("m=image 6000 udptl t38",),
        (),
    ],
    ids=["g729-only", "events-only", "srtp", "disabled", "video-only", "t38", "no-media"],
)
def test_no_acceptable_audio_is_488(media: tuple[str, ...]) -> None:
    offer = offer_with(*media)
    with pytest.raises(SipParseError) as info:
        answer(offer)
    assert info.value.status_hint == 488


def test_answer_with_custom_supported_codecs() -> None:
    offer = SessionDescription.parse(sdp(*FREESWITCH_OFFER))
    g729 = Codec(18, "G729", 8000, fmtp="annexb=no")
    ans = answer(offer, supported=(PCMU, g729))
    assert ans.audio is not None
    assert ans.audio.codecs == (PCMU, g729)


@pytest.mark.parametrize(
    ("offered", "wanted", "expected"),
    [
        (SENDRECV, None, SENDRECV),
        (SENDONLY, None, RECVONLY),
        (RECVONLY, None, SENDONLY),
        (INACTIVE, None, INACTIVE),
        (SENDRECV, SENDONLY, SENDONLY),
        (SENDRECV, INACTIVE, INACTIVE),
        (SENDONLY, SENDONLY, INACTIVE),
        (RECVONLY, SENDRECV, SENDONLY),
        (SENDONLY, RECVONLY, RECVONLY),
    ],
)
def test_answer_direction(offered: str, wanted: str | None, expected: str) -> None:
    offer = offer_with("m=audio 5004 RTP/AVP 0", f"a={offered}")
    ans = answer(offer, direction=wanted)
    assert ans.audio is not None
    assert ans.audio.direction == expected


# --- hold --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lines", "effective"),
    [
        (("m=audio 5004 RTP/AVP 0", "a=sendonly"), SENDONLY),
        (("m=audio 5004 RTP/AVP 0", "a=inactive"), INACTIVE),
        (("m=audio 5004 RTP/AVP 0", "c=IN IP4 0.0.0.0"), SENDONLY),
        (("m=audio 5004 RTP/AVP 0", "c=IN IP4 0.0.0.0", "a=recvonly"), INACTIVE),
    ],
    ids=["sendonly", "inactive", "rfc2543", "rfc2543-recvonly"],
)
def test_hold_offers_are_recognised(lines: tuple[str, ...], effective: str) -> None:
    offer = offer_with(*lines)
    assert offer.on_hold
    assert offer.audio_direction == effective
    ans = answer(offer)
    assert ans.audio is not None
    assert ans.audio.direction == (RECVONLY if effective == SENDONLY else INACTIVE)


def test_legacy_hold_at_session_level() -> None:
    offer = offer_with("m=audio 5004 RTP/AVP 0", connection="0.0.0.0")
    assert offer.on_hold
    assert offer.rtp_address() == ("0.0.0.0", 5004)
    assert not offer_with("m=audio 5004 RTP/AVP 0", "a=recvonly").on_hold


def test_hold_and_resume_by_reoffer() -> None:
    offer = make_offer(address="192.0.2.10", port=30000, session_id=42)
    hold = bump_version(with_direction(offer, SENDONLY))
    assert hold.session_version == offer.session_version + 1
    assert hold.session_id == offer.session_id
    assert hold.on_hold
    peer = SessionDescription.parse(hold.encode())
    assert peer.on_hold
    ans = make_answer(peer, address="198.51.100.1", port=5000, session_id=7)
    assert ans.audio is not None and ans.audio.direction == RECVONLY
    result = negotiate(hold, ans)
    assert result is not None and result.direction == SENDONLY
    resume = bump_version(with_direction(hold, SENDRECV))
    assert resume.session_version == offer.session_version + 2
    assert not resume.on_hold
    assert replace(resume, session_version=offer.session_version) == offer


def test_with_direction_leaves_rejected_streams_alone() -> None:
    offer = SessionDescription.parse(sdp(*AUDIO_VIDEO_OFFER))
    ans = with_direction(answer(offer), INACTIVE)
    assert [m.direction for m in ans.media] == [INACTIVE, INACTIVE]
    ans = with_direction(answer(offer), SENDONLY)
    assert [m.direction for m in ans.media] == [SENDONLY, INACTIVE]
    with pytest.raises(ValueError):
        with_direction(ans, "hold")


# --- negotiation results for the media layer --------------------------------------------


def test_negotiate_as_offerer_uses_the_answers_preference_and_numbers() -> None:
    offer = make_offer(address="192.0.2.10", port=30000, session_id=42)
    remote = offer_with(
        "m=audio 5004 RTP/AVP 8 0 100",
        "a=rtpmap:100 telephone-event/8000",
        "a=fmtp:100 0-15",
        "a=ptime:30",
        "a=recvonly",
    )
    result = negotiate(offer, remote)
    assert result is not None
    assert result.codec == PCMA
    assert result.telephone_event == Codec(100, "telephone-event", 8000, fmtp="0-15")
    assert (result.remote_host, result.remote_port) == ("198.51.100.7", 5004)
    assert result.direction == SENDONLY
    assert result.ptime == 30


def test_negotiate_nothing_in_common() -> None:
    offer = make_offer(address="192.0.2.10", port=30000, session_id=42)
    remote = offer_with("m=audio 5004 RTP/AVP 18")
    assert negotiate(offer, remote) is None
    assert negotiated_codec(offer, remote) is None
    assert negotiate(offer, offer_with("m=audio 0 RTP/AVP 0")) is None


# --- telephone-event lists ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmtp", "events"),
    [
        ("0-16", set(range(17))),
        ("0-15,66,70", set(range(16)) | {66, 70}),
        (" 0-11 , 12 ", set(range(13))),
        ("events=0-15", set(range(16))),
        (None, set(range(16))),
        ("garbage", set(range(16))),
        ("15-0", set(range(16))),
        ("0-300", set(range(16))),
    ],
)
def test_parse_events(fmtp: str | None, events: set[int]) -> None:
    assert parse_events(fmtp) == events


@given(st.sets(st.integers(0, 255), min_size=1))
def test_events_round_trip(events: set[int]) -> None:
    assert parse_events(format_events(events)) == events


# --- generated descriptions --------------------------------------------------------------

TOKEN = st.text(string.ascii_letters + string.digits + "!#$%&'*+-.^_`{|}~", min_size=1, max_size=10)
TEXT = st.text(
    st.characters(blacklist_characters="\r\n\0", blacklist_categories=["Cs"]), max_size=20
)
VALUE = TEXT.map(lambda s: s.strip(" \t"))
ADDRESS = st.one_of(
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(str),
    st.from_regex(r"[a-z][a-z0-9-]{0,10}(\.[a-z]{2,5}){0,2}", fullmatch=True),
)
RESERVED = {"rtpmap", "fmtp", *DIRECTIONS}


def attributes(reserved: set[str]) -> st.SearchStrategy[tuple[tuple[str, str | None], ...]]:
    names = TOKEN.filter(lambda n: n.lower() not in reserved)
    return st.lists(st.tuples(names, st.none() | VALUE), max_size=4).map(tuple)


CODEC = st.builds(
    Codec,
    payload_type=st.integers(0, 127),
    name=TOKEN.filter(lambda n: "/" not in n),
    clock_rate=st.integers(1, 10**9),
    channels=st.integers(1, 999),
    fmtp=st.none() | VALUE.filter(bool),
)
UNKNOWN_PT = st.integers(0, 127).filter(lambda pt: pt not in STATIC_PAYLOAD_TYPES)


@st.composite
def rtp_media(draw: st.DrawFn) -> MediaDescription:
    entries = draw(
        st.lists(
            st.one_of(CODEC, UNKNOWN_PT),
            min_size=1,
            max_size=6,
            unique_by=lambda e: e.payload_type if isinstance(e, Codec) else e,
        )
    )
    return MediaDescription(
        media=draw(st.sampled_from(["audio", "video"]) | TOKEN),
        port=draw(st.integers(0, 65535)),
        protocol=draw(st.sampled_from(["RTP/AVP", "RTP/SAVP", "RTP/AVPF", "UDP/TLS/RTP/SAVPF"])),
        formats=tuple(e.payload_type if isinstance(e, Codec) else e for e in entries),
        codecs=tuple(e for e in entries if isinstance(e, Codec)),
        direction=draw(st.sampled_from(sorted(DIRECTIONS))),
        connection=draw(st.none() | ADDRESS),
        attributes=draw(attributes(RESERVED)),
        port_count=draw(st.none() | st.integers(1, 99999)),
    )


@st.composite
def other_media(draw: st.DrawFn) -> MediaDescription:
    return MediaDescription(
        media=draw(st.sampled_from(["image", "application"])),
        port=draw(st.integers(0, 65535)),
        protocol=draw(st.sampled_from(["udptl", "TCP/BFCP", "UDP", "TCP/MSRP"])),
        formats=(),
        codecs=(),
        direction=draw(st.sampled_from(sorted(DIRECTIONS))),
        connection=draw(st.none() | ADDRESS),
        attributes=draw(attributes(set(DIRECTIONS))),
        raw_formats=tuple(draw(st.lists(TOKEN, min_size=1, max_size=3))),
    )


@st.composite
def descriptions(draw: st.DrawFn) -> SessionDescription:
    connection = draw(st.none() | ADDRESS)
    media = draw(st.lists(rtp_media() | other_media(), max_size=3))
    if connection is None:  # every active stream needs a c= (RFC 8866 section 5.7)
        media = [
            replace(m, connection=draw(ADDRESS)) if m.port and m.connection is None else m
            for m in media
        ]
    return SessionDescription(
        origin_username=draw(TOKEN),
        session_id=draw(st.integers(0, 2**64)),
        session_version=draw(st.integers(0, 2**64)),
        address=draw(ADDRESS),
        connection=connection,
        media=tuple(media),
        session_name=draw(TEXT),
        address_type=draw(st.sampled_from(["IP4", "IP6"])),
        attributes=draw(attributes(set(DIRECTIONS))),
    )


@settings(max_examples=300)
@given(descriptions())
def test_round_trip(description: SessionDescription) -> None:
    assert SessionDescription.parse(description.encode()) == description
    assert SessionDescription.parse(description.encode().decode()) == description


@st.composite
def audio_offers(draw: st.DrawFn) -> SessionDescription:
    """Offers that mix our codecs, foreign ones and other streams."""
    ours = [PCMU, PCMA, replace(TELEPHONE_EVENT, payload_type=draw(st.integers(96, 127)))]
    foreign = [Codec(18, "G729", 8000), Codec(9, "G722", 8000), Codec(111, "opus", 48000, 2)]
    chosen = draw(st.lists(st.sampled_from(ours + foreign), unique=True, max_size=5))
    chosen = list({c.payload_type: c for c in chosen}.values())
    audio = MediaDescription(
        media="audio",
        port=draw(st.integers(0, 65535)),
        protocol=draw(st.sampled_from(["RTP/AVP", "RTP/SAVP"])),
        formats=tuple(c.payload_type for c in chosen) or (0,),
        codecs=tuple(chosen) or (PCMU,),
        direction=draw(st.sampled_from(sorted(DIRECTIONS))),
    )
    others = draw(st.lists(rtp_media() | other_media(), max_size=2))
    media = draw(st.permutations([audio, *others]))
    return SessionDescription(
        origin_username="-",
        session_id=1,
        session_version=1,
        address="198.51.100.7",
        connection=draw(st.sampled_from(["198.51.100.7", "0.0.0.0"])),
        media=tuple(media),
    )


@settings(max_examples=300)
@given(audio_offers(), st.none() | st.sampled_from(sorted(DIRECTIONS)))
def test_answers_follow_rfc3264(offer: SessionDescription, wanted: str | None) -> None:
    try:
        ans = answer(offer, direction=wanted)
    except SipParseError as error:
        assert error.status_hint == 488
        return
    assert SessionDescription.parse(ans.encode()) == ans
    assert len(ans.media) == len(offer.media)
    accepted = [i for i, m in enumerate(ans.media) if not m.rejected]
    assert len(accepted) == 1
    for mine, theirs in zip(ans.media, offer.media, strict=True):
        assert (mine.media, mine.protocol) == (theirs.media, theirs.protocol)
    index = accepted[0]
    mine, theirs = ans.media[index], offer.media[index]
    assert mine.media == "audio" and theirs.port != 0
    offered_pts = {c.payload_type: c for c in theirs.codecs}
    for codec in mine.codecs:  # offerer's numbers and names, offerer's order
        assert codec.same_format(offered_pts[codec.payload_type])
    order = [pt for pt in theirs.formats if pt in mine.formats]
    assert list(mine.formats) == order
    assert mine.voice_codecs
    result = negotiate(ans, offer)
    assert result is not None and result.index == index
    assert result.codec in theirs.codecs


# --- fuzzing: parse raises SipParseError and nothing else -------------------------------


def parses_or_rejects(data: bytes | str) -> None:
    try:
        SessionDescription.parse(data)
    except SipParseError:
        pass


@given(st.binary(max_size=400))
def test_parse_arbitrary_bytes(data: bytes) -> None:
    parses_or_rejects(data)


@given(st.text(max_size=400))
def test_parse_arbitrary_text(data: str) -> None:
    parses_or_rejects(data)


PREFIXES = [
    "v=0", "o=", "o=- 1 1 IN IP4 ", "s=", "c=IN IP4 ", "c=IN IP6 ", "c=", "t=0 0", "b=AS:",
    "m=audio ", "m=audio 6000 RTP/AVP ", "m=image 0 udptl ", "a=rtpmap:", "a=rtpmap:96 ",
    "a=fmtp:", "a=fmtp:101 ", "a=ptime:", "a=sendonly", "a=", "x=", "",
]  # fmt: skip
JUNK = st.text(string.digits + string.ascii_letters[:6] + " /:-.\t=\x00\r", max_size=12)


@settings(max_examples=500)
@given(
    st.lists(st.tuples(st.sampled_from(PREFIXES), JUNK), max_size=12),
    st.sampled_from(["\r\n", "\n"]),
)
def test_parse_sdp_shaped_junk(lines: list[tuple[str, str]], eol: str) -> None:
    body = eol.join(["v=0", *(prefix + tail for prefix, tail in lines)])
    parses_or_rejects(body)
    parses_or_rejects(body.encode())


@settings(max_examples=300)
@given(descriptions(), st.data())
def test_parse_mutated_descriptions(description: SessionDescription, data: st.DataObject) -> None:
    body = bytearray(description.encode())
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, len(body) - 1))
        if data.draw(st.booleans()):
            del body[position]
        else:
            body[position] = data.draw(st.sampled_from(b" \t\r\n:/=0-9aAmv\x00\xff"))
    parses_or_rejects(bytes(body))


def test_under_origin_keeps_our_origin_one_version_up_and_their_media() -> None:
    ours = make_offer(address="192.0.2.10", port=30000, session_id=42)
    theirs = make_offer(address="198.51.100.7", port=6222, session_id=99)
    reoffer = SessionDescription.parse(under_origin(theirs.encode(), ours.encode()))
    assert (reoffer.session_id, reoffer.session_version, reoffer.address) == (
        42, ours.session_version + 1, "192.0.2.10",
    )  # fmt: skip
    assert reoffer.rtp_address() == ("198.51.100.7", 6222)
    with pytest.raises(SipParseError):
        under_origin(b"not sdp", ours.encode())


# --- answer_to: make_answer's bytes and errors, remembered per offer shape ---------------

Outcome = bytes | tuple[type, str, int]


def _error(error: Exception) -> Outcome:
    hint = error.status_hint if isinstance(error, SipParseError) else 0
    return (type(error), str(error), hint)


def answer_or_error(offer: bytes | str, port: int, session_id: int = 7, version: int = 1,
                    direction: str | None = None) -> Outcome:  # fmt: skip
    """make_answer(parse(offer)).encode(), or the error it raises, to compare with answer_to."""
    try:
        parsed = SessionDescription.parse(offer)
        return make_answer(parsed, address="192.0.2.10", port=port, session_id=session_id,
                           session_version=version, direction=direction).encode()  # fmt: skip
    except (SipParseError, ValueError) as error:
        return _error(error)


def answer_to_or_error(offer: bytes | str, port: int, session_id: int = 7, version: int = 1,
                       direction: str | None = None) -> Outcome:  # fmt: skip
    try:
        return answer_to(offer, address="192.0.2.10", port=port, session_id=session_id,
                         session_version=version, direction=direction)  # fmt: skip
    except (SipParseError, ValueError) as error:
        return _error(error)


@settings(max_examples=300)
@given(audio_offers(), st.none() | st.sampled_from(sorted(DIRECTIONS)), st.data())
def test_answer_to_gives_make_answers_bytes_for_offers_of_one_shape(
    offer: SessionDescription, wanted: str | None, data: st.DataObject
) -> None:
    # The same offer again and again with other origins and other non-zero ports, answered
    # with other ports and ids: the shape's answer is made once, then reused.
    for _ in range(3):
        media = tuple(
            m if m.port == 0 else replace(m, port=data.draw(st.integers(1, 65535)))
            for m in offer.media
        )
        variant = replace(
            offer, media=media, session_id=data.draw(st.integers(0, 2**40)),
            origin_username=data.draw(st.sampled_from(["-", "alice", "sipp"])),
        ).encode()  # fmt: skip
        port = data.draw(st.integers(1, 65535))
        session_id = data.draw(st.integers(0, 2**40))
        version = data.draw(st.integers(0, 5))
        assert answer_to_or_error(variant, port, session_id, version, wanted) == answer_or_error(
            variant, port, session_id, version, wanted
        )


@settings(max_examples=500)
@given(
    st.lists(st.tuples(st.sampled_from(PREFIXES), JUNK), max_size=12),
    st.sampled_from(["\r\n", "\n"]),
    st.integers(0, 70000),
)
def test_answer_to_raises_what_the_parser_raises(
    lines: list[tuple[str, str]], eol: str, port: int
) -> None:
    known = sdp("v=0", "o=- 1 1 IN IP4 198.51.100.7", "s=-", "c=IN IP4 198.51.100.7", "t=0 0",
                "m=audio 6000 RTP/AVP 0 101", "a=rtpmap:101 telephone-event/8000")  # fmt: skip
    body = eol.join(["v=0", *(prefix + tail for prefix, tail in lines)])
    for offer in (known, body, body.encode(), known):
        assert answer_to_or_error(offer, port) == answer_or_error(offer, port)


def test_answer_to_checks_the_lines_it_does_not_remember() -> None:
    offer = [
        "v=0", "o=- 1 1 IN IP4 198.51.100.7", "s=-", "c=IN IP4 198.51.100.7", "t=0 0",
        "m=audio 6000 RTP/AVP 0 8", "a=sendrecv",
    ]  # fmt: skip
    first = answer_to_or_error(sdp(*offer), 30000)
    assert isinstance(first, bytes) and first == answer_or_error(sdp(*offer), 30000)
    broken_lines = [
        (1, "o=- x 1 IN IP4 198.51.100.7"), (1, "o=- 1 1 ATM NSAP x"),
        (5, "m=audio 70000 RTP/AVP 0 8"), (5, "m=audio 6000/0 RTP/AVP 0 8"),
    ]  # fmt: skip
    for index, bad in broken_lines:
        broken = sdp(*offer[:index], bad, *offer[index + 1 :])
        error = answer_to_or_error(broken, 30000)
        assert isinstance(error, tuple) and error[0] is SipParseError
        assert error == answer_or_error(broken, 30000)
    # A port that is zero refuses the stream, whatever the answer to port 6000 was.
    held = sdp(*offer[:5], "m=audio 0 RTP/AVP 0 8", "m=audio 6002 RTP/AVP 8", *offer[6:])
    assert answer_to_or_error(held, 30000) == answer_or_error(held, 30000)
    assert answer_to_or_error(sdp(*offer), 70000)[0] is ValueError
