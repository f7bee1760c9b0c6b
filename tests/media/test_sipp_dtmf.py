"""RFC 4733 digits from SIPp (play_pcap_audio of its own captures) into an embedded session.

SIPp calls our UserAgent, which answers with the session's SDP; SIPp then replays its
telephone-event captures to the session's RTP port. Replaying a capture needs raw sockets,
so root (CI is root); elsewhere the test skips, and test_embedded's
test_dtmf_captured_from_a_phone sends the same captures from a plain UDP socket.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.sipp import SippClient, free_port, requires_sipp
from voiceplane.media.embedded import EmbeddedMedia, EmbeddedSession
from voiceplane.sip.ua import InboundCall, UserAgent

pytestmark = [
    pytest.mark.sipp,
    requires_sipp,
    pytest.mark.skipif(os.geteuid() != 0, reason="SIPp's play_pcap_audio needs root"),
]

SCENARIO = Path(__file__).parent / "sipp" / "uac_dtmf_2833.xml"
CAPTURES = Path("/usr/share/sip-tester")


async def test_sipp_key_presses_come_out_once_each(tmp_path: Path) -> None:
    if not (CAPTURES / "dtmf_2833_pound.pcap").is_file():
        pytest.skip(f"SIPp's DTMF captures are not in {CAPTURES}")
    media = EmbeddedMedia("127.0.0.1", (20000, 30000))
    sessions: list[EmbeddedSession] = []

    async def on_call(call: InboundCall) -> None:
        session = await media.open_session()
        sessions.append(session)
        call.answer(session.answer(call.remote_sdp))
        await call.ended()
        await session.close()

    port = free_port()
    ua = UserAgent(listen=[("udp", "127.0.0.1", port)], on_call=on_call)
    await ua.start()
    try:
        client = SippClient(
            SCENARIO, tmp_path, port, extra_args=["-mp", str(free_port())], duration_ms=None
        )
        result = await client.run(30)
    finally:
        await ua.stop()
        await media.close()
    result.assert_ok(calls=1)
    (session,) = sessions
    digits = session.dtmf()
    got = [digits.get_nowait() for _ in range(digits.qsize())]
    assert got == ["1", "#", "5", "5"]
    assert [k.digit for k in session.key_presses] == got
    # The captures hold each key 2240 samples (0.28 s).
    assert [k.seconds for k in session.key_presses] == [0.28] * 4
