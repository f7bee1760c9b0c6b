"""Self-tests of the SIPp harness: every scenario runs against its SIPp counterpart
on loopback, over UDP and TCP, and the results are checked in detail, so that a
harness that silently passes cannot go unnoticed."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest

from tests.support.sipp import (
    SCENARIO_DIR,
    SippClient,
    SippMessage,
    SippResult,
    SippServer,
    SippStartupError,
    Transport,
    free_port,
    iter_scenarios,
    parse_message_log,
    render_scenario,
    requires_sipp,
)

TRANSPORTS: list[Transport] = ["udp", "tcp"]

#: Scenario pairs exercised below; test_every_scenario_is_exercised keeps it honest.
EXERCISED = {
    "uas_answer",
    "uas_answer_then_bye",
    "uas_183_then_200",
    "uas_ring_forever",
    "uas_no_answer",
    "uas_final",
    "uas_auth",
    "uas_options",
    "uac_call_sipp_hangs_up",
    "uac_call_remote_hangs_up",
    "uac_cancel",
    "uac_cancel_unanswered",
    "uac_give_up_silently",
    "uac_expect_final",
    "uac_auth_call",
    "uac_options",
    "uac_rate",
}

#: Scenarios that play a party against voiceplane itself, and the tests that run them.
EXERCISED_ELSEWHERE = {
    "operator_by_number": "tests/calls/test_engine_sipp.py",
    "operator_short_calls": "tests/calls/test_capacity_sipp.py",
    "sandbox_cancel_after": "tests/sandbox",
    "sandbox_reinvite": "tests/sandbox",
    "uas_answer_info_key": "tests/calls/test_leg_flow_sipp.py",
}


async def run_pair(
    tmp_path: Path,
    server: SippServer,
    client_scenario: str,
    *,
    timeout: float = 15.0,
    **client_options: object,
) -> tuple[SippResult, SippResult]:
    """Run a SIPp UAC scenario against an (unstarted) SIPp UAS; return both results."""
    async with server:
        client = SippClient(
            client_scenario,
            tmp_path,
            server.port,
            transport=server.transport,
            **client_options,  # type: ignore[arg-type]
        )
        client_result = await client.run(timeout)
        server_result = await server.wait(timeout)
    return server_result, client_result


def only(messages: list[SippMessage], count: int = 1) -> SippMessage:
    """The last of ``messages``, asserting there are exactly ``count`` of them."""
    assert len(messages) == count, [m.start_line for m in messages]
    return messages[-1]


def tag(header_value: str | None) -> str | None:
    found = re.search(r";\s*tag=([^;>\s]+)", header_value or "")
    return found.group(1) if found else None


def branch(message: SippMessage) -> str | None:
    found = re.search(r";\s*branch=([^;\s,]+)", message.header("Via") or "")
    return found.group(1) if found else None


def assert_transport(result: SippResult, transport: Transport) -> None:
    assert result.messages, "no message logged"
    for message in result.messages:
        assert message.transport == transport.upper()
    for message in result.received():
        if message.is_request:
            assert (message.header("Via") or "").startswith(f"SIP/2.0/{transport.upper()} ")


# ------------------------------------------------------------- calls SIPp answers


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.sipp
@requires_sipp
async def test_answer_then_caller_hangs_up(tmp_path: Path, transport: Transport) -> None:
    server = SippServer("uas_answer", tmp_path, transport=transport)
    server_result, client_result = await run_pair(
        tmp_path, server, "uac_call_sipp_hangs_up", duration_ms=50
    )
    server_result.assert_ok()
    client_result.assert_ok()
    assert_transport(server_result, transport)

    invite = only(server_result.received("INVITE"))
    assert invite.text.startswith("INVITE sip:") and invite.text.endswith("a=sendrecv\r\n")
    assert invite.text.count("\r\n") == invite.text.count("\n")  # CRLF kept as on the wire
    assert invite.header("Content-Type") == "application/sdp"
    assert len(invite.body.encode()) == int(invite.header("Content-Length") or -1)
    assert "m=audio " in invite.body and "a=rtpmap:101 telephone-event/8000" in invite.body
    assert invite.request_uri == f"sip:service@127.0.0.1:{server.port}"
    assert [m.status_code for m in server_result.sent()] == [100, 180, 200, 200]
    ringing, ok = server_result.sent(180)[0], server_result.sent(200)[0]
    assert tag(ringing.header("To")) == tag(ok.header("To")) is not None
    assert "SIPpTag01" in (tag(ok.header("To")) or "")
    assert re.search(r"^m=audio \d+ RTP/AVP 0 8 101", ok.body, re.M)
    assert ok.cseq == (1, "INVITE") and ok.call_id == invite.call_id
    ack, bye = only(server_result.received("ACK")), only(server_result.received("BYE"))
    assert ack.cseq == (1, "ACK") and bye.cseq == (2, "BYE")
    assert tag(bye.header("To")) == tag(ok.header("To"))
    assert server_result.count("INVITE") == 1 and server_result.count("BYE") == 1
    assert server_result.count("200", "Sent") == 2
    assert not server_result.unexpected
    # the client's view mirrors the server's
    assert [m.start_line.split(" ")[0] for m in client_result.sent()] == ["INVITE", "ACK", "BYE"]
    assert [m.status_code for m in client_result.received()] == [100, 180, 200, 200]


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.sipp
@requires_sipp
async def test_sipp_uas_hangs_up(tmp_path: Path, transport: Transport) -> None:
    server = SippServer("uas_answer_then_bye", tmp_path, transport=transport, duration_ms=50)
    server_result, client_result = await run_pair(tmp_path, server, "uac_call_remote_hangs_up")
    server_result.assert_ok()
    client_result.assert_ok()
    assert_transport(server_result, transport)

    invite = only(server_result.received("INVITE"))
    ok = only(server_result.sent(200))
    bye = only(server_result.sent("BYE"))
    contact = re.search(r"<([^>]+)>", invite.header("Contact") or "")
    assert contact is not None and bye.request_uri == contact.group(1)
    assert (bye.header("To") or "") == invite.header("From")
    assert tag(bye.header("From")) == tag(ok.header("To")) is not None
    assert bye.call_id == invite.call_id
    assert (bye.header("Via") or "").startswith(f"SIP/2.0/{transport.upper()} 127.0.0.1:")
    bye_ok = only(server_result.received(200))
    assert bye_ok.cseq_method == "BYE"
    assert only(client_result.received("BYE")).call_id == invite.call_id


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.sipp
@requires_sipp
async def test_early_media_then_answer(tmp_path: Path, transport: Transport) -> None:
    server = SippServer("uas_183_then_200", tmp_path, transport=transport)
    server_result, client_result = await run_pair(
        tmp_path, server, "uac_call_sipp_hangs_up", duration_ms=0
    )
    server_result.assert_ok()
    client_result.assert_ok()
    assert_transport(server_result, transport)
    progress = only(server_result.sent(183))
    assert progress.header("Content-Type") == "application/sdp"
    assert "m=audio " in progress.body
    answer = server_result.sent(200)[0]
    assert answer.cseq == (1, "INVITE") and answer.body.startswith("v=0")
    assert [m.status_code for m in client_result.received()] == [100, 183, 200, 200]
    assert progress.time and answer.time and (answer.time - progress.time).total_seconds() >= 0.15


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.sipp
@requires_sipp
async def test_ring_until_cancel(tmp_path: Path, transport: Transport) -> None:
    server = SippServer("uas_ring_forever", tmp_path, transport=transport)
    server_result, client_result = await run_pair(tmp_path, server, "uac_cancel")
    server_result.assert_ok()
    client_result.assert_ok()
    assert_transport(server_result, transport)

    invite = only(server_result.received("INVITE"))
    cancel = only(server_result.received("CANCEL"))
    assert cancel.request_uri == invite.request_uri
    assert branch(cancel) == branch(invite) is not None
    assert cancel.cseq == (1, "CANCEL") and cancel.call_id == invite.call_id
    assert tag(cancel.header("To")) is None
    cancel_ok = only(server_result.sent(200))
    assert cancel_ok.cseq == (1, "CANCEL")
    terminated = only(server_result.sent(487))
    assert terminated.cseq == (1, "INVITE") and branch(terminated) == branch(invite)
    ack = only(server_result.received("ACK"))
    assert ack.cseq == (1, "ACK") and branch(ack) == branch(invite)
    assert tag(ack.header("To")) == tag(terminated.header("To")) is not None


@pytest.mark.sipp
@requires_sipp
@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize(
    ("code", "extra_headers"),
    [
        pytest.param(
            486,
            {"Reason": 'Q.850;cause=17;text="User busy"'},
        ),
        pytest.param(
            503,
            ["Retry-After: 30", "Reason: Q.850;cause=34"],
        ),
        pytest.param(
            603,
            "",
        ),
    ],
)
async def test_final_codes(
    tmp_path: Path, transport: Transport, code: int, extra_headers: object
) -> None:
    server = SippServer(
        "uas_final",
        tmp_path,
        transport=transport,
        values={"code": code, "extra_headers": extra_headers},
    )
    server_result, client_result = await run_pair(
        tmp_path, server, "uac_expect_final", values={"code": code}
    )
    server_result.assert_ok()
    client_result.assert_ok()
    assert_transport(server_result, transport)
    final = only(client_result.received(code))
    assert final.reason == {486: "Busy Here", 503: "Service Unavailable", 603: "Decline"}[code]
    if code == 486:
        assert final.header("Reason") == 'Q.850;cause=17;text="User busy"'
    elif code == 503:
        assert final.header("Retry-After") == "30"
        assert final.header("Reason") == "Q.850;cause=34"
    else:
        assert not final.has_header("Reason")
    invite = only(server_result.received("INVITE"))
    ack = only(server_result.received("ACK"))
    assert branch(ack) == branch(invite) and ack.cseq == (1, "ACK")


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.sipp
@requires_sipp
async def test_digest_challenge(tmp_path: Path, transport: Transport) -> None:
    credentials = ("alice", "s3cret")
    server = SippServer("uas_auth", tmp_path, transport=transport, auth=credentials)
    server_result, client_result = await run_pair(
        tmp_path, server, "uac_auth_call", auth=credentials
    )
    server_result.assert_ok()
    client_result.assert_ok()
    assert_transport(server_result, transport)
    challenge = only(server_result.sent(401))
    assert 'nonce="8a7a5b2c3d4e5f60"' in (challenge.header("WWW-Authenticate") or "")
    first, second = server_result.received("INVITE")
    assert not first.has_header("Authorization")
    authorization = second.header("Authorization") or ""
    assert authorization.startswith("Digest ")
    assert 'username="alice"' in authorization and 'nonce="8a7a5b2c3d4e5f60"' in authorization
    assert second.cseq == (2, "INVITE") and second.call_id == first.call_id
    assert "valid:true" in server_result.action_log
    assert [m.status_code for m in server_result.sent()] == [401, 100, 180, 200, 200]


#: A caller that answers uas_auth's challenge with the wrong password and ACKs the
#: 403. (uac_auth_call cannot: a SIPp call that has sent an ACK counts as
#: established, so when SIPp aborts it on the unexpected 403 it sends a BYE.)
WRONG_PASSWORD_CALLER = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="wrong password">
  <send retrans="500"><![CDATA[
    INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
    Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
    From: <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
    To: <sip:[service]@[remote_ip]:[remote_port]>
    Call-ID: [call_id]
    CSeq: 1 INVITE
    Contact: <sip:sipp@[local_ip]:[local_port];transport=[transport]>
    Content-Length: 0
  ]]></send>
  <recv response="401" auth="true"/>
  <send><![CDATA[
    ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
    [last_Via:]
    From: <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
    [last_To:]
    Call-ID: [call_id]
    CSeq: 1 ACK
    Content-Length: 0
  ]]></send>
  <send retrans="500"><![CDATA[
    INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
    Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
    From: <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
    To: <sip:[service]@[remote_ip]:[remote_port]>
    Call-ID: [call_id]
    CSeq: 2 INVITE
    Contact: <sip:sipp@[local_ip]:[local_port];transport=[transport]>
    [authentication]
    Content-Length: 0
  ]]></send>
  <recv response="403"/>
  <send><![CDATA[
    ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
    [last_Via:]
    From: <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
    [last_To:]
    Call-ID: [call_id]
    CSeq: 2 ACK
    Content-Length: 0
  ]]></send>
</scenario>
"""


@pytest.mark.sipp
@requires_sipp
async def test_digest_challenge_wrong_password_fails(tmp_path: Path) -> None:
    caller = tmp_path / "wrong_password.xml"
    caller.write_text(WRONG_PASSWORD_CALLER)
    server = SippServer("uas_auth", tmp_path, auth=("alice", "s3cret"))
    server_result, client_result = await run_pair(
        tmp_path, server, str(caller), auth=("alice", "wrong")
    )
    client_result.assert_ok()
    assert 'username="alice"' in (server_result.received("INVITE")[1].header("Authorization") or "")
    assert only(server_result.sent(403)).cseq == (2, "INVITE")
    assert only(server_result.received("ACK"), 2)
    assert "valid:false" in server_result.action_log
    assert server_result.returncode == 1 and server_result.successful_calls == 0
    assert server_result.failure_reasons == {"FailedCallRejected": 1}
    with pytest.raises(AssertionError, match="FailedCallRejected"):
        server_result.assert_ok()


# ---------------------------------------------------------- no answer at all


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.sipp
@requires_sipp
async def test_no_answer_caller_gives_up(tmp_path: Path, transport: Transport) -> None:
    # uac_give_up_silently gives up after 600 ms and exits (over TCP: closes the
    # connection) while SIPp still holds the call for 750 ms.
    server = SippServer("uas_no_answer", tmp_path, transport=transport, values={"hold_ms": 750})
    server_result, client_result = await run_pair(tmp_path, server, "uac_give_up_silently")
    server_result.assert_ok()
    client_result.assert_ok()
    assert server_result.sent() == []
    invites = server_result.received("INVITE")
    assert {m.call_id for m in invites} == {client_result.sent("INVITE")[0].call_id}
    if transport == "udp":  # retransmitted after 500 ms, absorbed by SIPp
        assert len(invites) >= 2
        assert server_result.count("INVITE", "Retrans") == len(invites) - 1
    else:
        assert len(invites) == 1
    assert server_result.count("Pause", "Sessions") == 1  # the hold (a timewait)
    assert server_result.count("CANCEL") == 0 and not server_result.received("CANCEL")


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.sipp
@requires_sipp
async def test_no_answer_caller_cancels_anyway(tmp_path: Path, transport: Transport) -> None:
    server = SippServer("uas_no_answer", tmp_path, transport=transport)
    server_result, client_result = await run_pair(tmp_path, server, "uac_cancel_unanswered")
    server_result.assert_ok()
    client_result.assert_ok()
    invite = only(server_result.received("INVITE"))
    cancel = only(server_result.received("CANCEL"))
    assert branch(cancel) == branch(invite) is not None
    assert [m.status_code for m in server_result.sent()] == [200, 487]
    assert only(server_result.sent(487)).cseq == (1, "INVITE")
    assert only(server_result.received("ACK")).cseq == (1, "ACK")


# ------------------------------------------------------------ OPTIONS and load


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.sipp
@requires_sipp
async def test_options(tmp_path: Path, transport: Transport) -> None:
    server = SippServer("uas_options", tmp_path, transport=transport)
    server_result, client_result = await run_pair(tmp_path, server, "uac_options")
    server_result.assert_ok()
    client_result.assert_ok()
    options = only(server_result.received("OPTIONS"))
    assert options.cseq == (1, "OPTIONS")
    assert "OPTIONS" in (only(client_result.received(200)).header("Allow") or "")


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.sipp
@requires_sipp
async def test_rate(tmp_path: Path, transport: Transport) -> None:
    calls = 6
    server = SippServer("uas_answer", tmp_path, transport=transport, calls=calls)
    server_result, client_result = await run_pair(
        tmp_path, server, "uac_rate", calls=calls, rate=200, trace_msg=False
    )
    server_result.assert_ok()
    client_result.assert_ok()
    assert server_result.successful_calls == client_result.successful_calls == calls
    assert server_result.count("INVITE") == calls and server_result.count("BYE") == calls
    assert client_result.count("INVITE", "Sent") == calls
    assert client_result.messages == []  # trace_msg=False
    assert len({m.call_id for m in server_result.received("INVITE")}) == calls


# ----------------------------------------------------- the harness catches failure


@pytest.mark.sipp
@requires_sipp
async def test_unexpected_message_fails_the_run(tmp_path: Path) -> None:
    server = SippServer("uas_answer", tmp_path)
    server_result, client_result = await run_pair(
        tmp_path, server, "uac_options", recv_timeout_ms=300
    )
    assert server_result.returncode == 1
    assert server_result.failed_calls == 1 and server_result.successful_calls == 0
    assert server_result.failure_reasons == {"FailedUnexpectedMessage": 1}
    assert only(server_result.unexpected).method == "OPTIONS"
    with pytest.raises(AssertionError) as raised:
        server_result.assert_ok()
    text = str(raised.value)
    assert "FailedUnexpectedMessage" in text and "OPTIONS sip:service@" in text
    assert str(server_result.workdir) in text
    assert client_result.failure_reasons == {"FailedTimeoutOnRecv": 1}


@pytest.mark.sipp
@requires_sipp
async def test_wait_timeout_stops_sipp(tmp_path: Path) -> None:
    async with SippServer("uas_ring_forever", tmp_path, transport="tcp") as server:
        result = await server.wait(timeout=0.2)
        assert not server.running
    assert result.timed_out
    assert result.successful_calls == 0
    with pytest.raises(AssertionError, match="did not finish in time"):
        result.assert_ok()


@pytest.mark.sipp
@requires_sipp
async def test_exit_kills_a_running_sipp(tmp_path: Path) -> None:
    server = SippServer("uas_ring_forever", tmp_path)
    async with server:
        assert server.running and server.pid is not None
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            with pytest.raises(OSError):
                probe.bind(server.address)
    assert not server.running


@pytest.mark.sipp
@requires_sipp
async def test_startup_errors_are_reported(tmp_path: Path) -> None:
    broken = tmp_path / "broken.xml"
    broken.write_text('<?xml version="1.0"?>\n<scenario name="broken"><bogus/></scenario>\n')
    with pytest.raises(SippStartupError, match="exited with"):
        async with SippServer(broken, tmp_path):
            pass
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        with pytest.raises(SippStartupError, match="254"):
            async with SippServer("uas_answer", tmp_path, port=port):
                pass


# ------------------------------------------------------ without SIPp: the helpers


def test_every_scenario_is_exercised() -> None:
    names = {p.name.split(".")[0] for p in iter_scenarios()}
    assert names == EXERCISED | set(EXERCISED_ELSEWHERE)
    root = Path(__file__).resolve().parents[2]
    for name, where in EXERCISED_ELSEWHERE.items():
        users = [root / where] if where.endswith(".py") else list((root / where).rglob("*.py"))
        assert any(name in user.read_text() for user in users), f"{name} unused in {where}"


@pytest.mark.parametrize("kind", ["udp", "tcp", "both"])
def test_free_port_is_free_for_udp_and_tcp(kind: str) -> None:
    port = free_port(kind)  # type: ignore[arg-type]
    assert port != free_port(kind)  # type: ignore[arg-type]
    for sock_type in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        with socket.socket(socket.AF_INET, sock_type) as sock:
            sock.bind(("127.0.0.1", port))


def test_render_final_template(tmp_path: Path) -> None:
    path = render_scenario(
        "uas_final", tmp_path, code=486, extra_headers={"Reason": "Q.850;cause=17"}
    )
    text = path.read_text()
    assert path.parent == tmp_path and path.name.startswith("uas_final_")
    assert "SIP/2.0 486 Busy Here\n" in text
    assert re.search(r"^      Reason: Q.850;cause=17\n      Content-Length: 0$", text, re.M)
    # The default pause of 0 ms is dropped: SIPp 3.6.1 sometimes never wakes such a call.
    assert "<pause" not in text and "$" not in text
    assert re.search(r"180 Ringing.*</send>\s*<send retrans=\"500\">", text, re.S)

    plain = render_scenario("uas_final", tmp_path, code=603, reason="Nope", pause_ms=50)
    plain_text = plain.read_text()
    assert "SIP/2.0 603 Nope\n" in plain_text and 'milliseconds="50"' in plain_text
    assert re.search(r"\[last_CSeq:\]\n      Content-Length: 0", plain_text)  # no blank line
    assert render_scenario("uas_final", tmp_path, code=603, reason="Nope", pause_ms=50) == plain


def test_render_rejects_bad_values(tmp_path: Path) -> None:
    with pytest.raises(KeyError, match="code"):
        render_scenario("uas_final", tmp_path)
    with pytest.raises(TypeError, match="colour"):
        render_scenario("uas_final", tmp_path, code=486, colour="red")
    with pytest.raises(ValueError, match="300-699"):
        render_scenario("uas_final", tmp_path, code=200)
    with pytest.raises(ValueError, match="single line"):
        render_scenario("uas_final", tmp_path, code=486, reason="Busy\nHere")
    with pytest.raises(TypeError, match="not a template"):
        render_scenario("uas_answer", tmp_path, code=486)
    with pytest.raises(FileNotFoundError, match="uas_nothing"):
        render_scenario("uas_nothing", tmp_path)
    copied = render_scenario("uas_answer.xml", tmp_path)
    assert copied.read_text() == (SCENARIO_DIR / "uas_answer.xml").read_text()


def test_parse_message_log() -> None:
    sep = "-" * 47
    log = (
        f"{sep} 2026-11-27 10:05:54.536241\n"
        "UDP message received [120] bytes :\n\n"
        "INVITE sip:bob@127.0.0.1:5060 SIP/2.0\r\n"
        "v: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-1\r\n"
        "i: abc@127.0.0.1\r\n"
        "Subject: a folded\r\n  subject\r\n"
        "l: 4\r\n\r\n"
        "v=0\r\n\n\n"
        f"{sep} 2026-11-27 10:05:54.536505\n"
        "TCP message sent (20 bytes):\n\n"
        "SIP/2.0 180 Ringing\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n\n\n"
        f"{sep}\n"
        "Unexpected UDP message received:\n\n"
        "BYE sip:x SIP/2.0\r\nCall-ID: y\r\n\r\n\n"
    )
    invite, ringing, bye = parse_message_log(log)
    assert invite.direction == "received" and invite.transport == "UDP"
    assert invite.method == "INVITE" and invite.request_uri == "sip:bob@127.0.0.1:5060"
    assert invite.header("Via") == "SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-1"
    assert invite.call_id == "abc@127.0.0.1" and invite.header("subject") == "a folded subject"
    assert invite.body == "v=0\r" and invite.time is not None
    assert ringing.direction == "sent" and ringing.transport == "TCP"
    assert ringing.status_code == 180 and ringing.reason == "Ringing"
    assert ringing.cseq == (1, "INVITE") and ringing.body == ""
    assert ringing.matches(180) and ringing.matches("180") and not ringing.matches("INVITE")
    assert bye.direction == "unexpected" and bye.method == "BYE" and bye.time is None
