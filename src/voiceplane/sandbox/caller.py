"""The sandbox as a caller: ring a DID of a running platform, press keys, hang up.

``voiceplane sandbox call --from N --to DID --press 1,42# --hangup-after S`` uses this so a
newcomer can walk a flow without a phone. The call crosses real SIP (our own user agent
to the platform's SIP address) and real RTP: a small phone here answers the SDP, counts
the prompt packets the platform sends, and sends the keys as RFC 4733 telephone-events
(each press 200 ms long, three end packets, as phones do).

``--press`` is a comma-separated list of inputs: each input's keys are pressed one after
another (0.3 s apart), and inputs are ``press_gap`` seconds apart, the first ``press_delay``
seconds after the answer, so "1,42#" answers a menu with 1 and then types 42# into a gather.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
from dataclasses import dataclass, field
from typing import Final

from voiceplane.media.rtp import TelephoneEvent, plain_header, rtp_header
from voiceplane.sip.addressing import Address
from voiceplane.sip.errors import SipParseError
from voiceplane.sip.sdp import NegotiatedAudio, SessionDescription, make_offer, negotiate
from voiceplane.sip.ua import UserAgent

FRAME_S: Final = 0.02
EVENT_FRAMES: Final = 10  # a press is held 200 ms
END_COPIES: Final = 3  # RFC 4733 section 2.5.1.4: the end packet is sent three times
KEY_GAP_S: Final = 0.3
VOICE_TYPES: Final = frozenset({0, 8})
DTMF_KEYS: Final = frozenset("0123456789*#ABCD")


def parse_presses(text: str | None) -> tuple[str, ...]:
    """``"1,42#"`` as inputs ``("1", "42#")``; ValueError for anything but DTMF keys."""
    if text is None or not text.strip():
        return ()
    inputs = tuple(part.strip().upper() for part in text.split(","))
    for item in inputs:
        if not item or any(key not in DTMF_KEYS for key in item):
            raise ValueError(
                f"--press takes DTMF keys (0-9 * # A-D) separated by commas: {text!r}"
            )
    return inputs


@dataclass
class CallReport:
    """What happened on the call, from the caller's side."""

    final_status: int | None = None  # the final response to our INVITE
    reason: str = ""
    answered: bool = False
    prompt_packets: int = 0  # voice RTP packets the platform sent us
    first_prompt_after_s: float | None = None  # from the answer to the first voice packet
    digits_sent: list[str] = field(default_factory=list)
    hung_up_by: str | None = None  # "caller" (us, after hangup_after) or "platform"
    seconds: float = 0.0  # from the answer to the end

    def lines(self) -> list[str]:
        status = f"{self.final_status} {self.reason}".strip() if self.final_status else "none"
        out = [f"final response: {status}"]
        if self.answered:
            first = (
                f", the first {self.first_prompt_after_s:.2f} s after the answer"
                if self.first_prompt_after_s is not None
                else ""
            )
            out.append(f"prompt packets received: {self.prompt_packets}{first}")
            out.append(f"digits sent: {','.join(self.digits_sent) or 'none'}")
            out.append(f"hung up by: {self.hung_up_by} after {self.seconds:.1f} s")
        return out


class _Phone(asyncio.DatagramProtocol):
    """The caller's RTP: counts the voice packets that arrive, sends telephone-events."""

    def __init__(self, report: CallReport) -> None:
        self.report = report
        self.transport: asyncio.DatagramTransport | None = None
        self.answered_at: float | None = None
        self.ssrc = random.getrandbits(32)
        self.sequence = random.getrandbits(16)
        self.timestamp = random.getrandbits(32)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        header = plain_header(data)
        if header is None or header[0] not in VOICE_TYPES:
            return
        self.report.prompt_packets += 1
        if self.report.first_prompt_after_s is None and self.answered_at is not None:
            loop = asyncio.get_running_loop()
            self.report.first_prompt_after_s = loop.time() - self.answered_at

    async def press(self, key: str, destination: tuple[str, int], payload_type: int) -> None:
        assert self.transport is not None
        start = self.timestamp
        for frame in range(1, EVENT_FRAMES + END_COPIES + 1):
            ended = frame > EVENT_FRAMES
            duration = min(frame, EVENT_FRAMES) * 160
            event = TelephoneEvent.from_digit(key, end=ended, duration=duration)
            header = rtp_header(payload_type, self.sequence, start, self.ssrc, marker=frame == 1)
            self.transport.sendto(header + event.encode(), destination)
            self.sequence = (self.sequence + 1) & 0xFFFF
            await asyncio.sleep(FRAME_S)
        self.timestamp = (self.timestamp + (EVENT_FRAMES + END_COPIES) * 160) & 0xFFFFFFFF


async def place_call(
    *,
    platform: Address,
    caller: str,
    did: str,
    presses: tuple[str, ...] = (),
    hangup_after: float = 10.0,
    press_delay: float = 1.0,
    press_gap: float = 2.0,
    local_host: str = "127.0.0.1",
) -> CallReport:
    """Call ``did`` at ``platform`` from ``caller``; see the module docstring."""
    report = CallReport()
    loop = asyncio.get_running_loop()
    ua = UserAgent(listen=[(platform.transport, local_host, 0)], user_agent="voiceplane-sandbox")
    await ua.start()
    family = socket.AF_INET6 if ":" in local_host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.bind((local_host, 0))
    port = sock.getsockname()[1]
    transport, phone = await loop.create_datagram_endpoint(lambda: _Phone(report), sock=sock)
    try:
        offer = make_offer(address=local_host, port=port, session_id=random.getrandbits(31))
        local = ua.addresses[platform.transport]
        host = f"[{platform.host}]" if ":" in platform.host else platform.host
        call = ua.invite(
            to_uri=f"sip:{did}@{host}:{platform.port}",
            from_uri=f"sip:{caller}@{local.host}:{local.port}",
            destination=platform,
            sdp=offer.encode(),
        )
        answered = False
        with contextlib.suppress(TimeoutError):
            answered = await asyncio.wait_for(asyncio.shield(call.answered()), hangup_after)
        if not answered:
            if call.outcome is None:
                call.cancel()
            outcome = await call.ended()
            report.final_status, report.reason = outcome.status, outcome.reason
            return report
        report.answered = True
        report.final_status, report.reason = 200, "OK"
        phone.answered_at = answered_at = loop.time()
        try:
            remote = SessionDescription.parse(call.remote_sdp)
        except SipParseError:
            remote = None
        agreed = negotiate(offer, remote) if remote is not None else None
        keys = asyncio.ensure_future(
            _press_all(phone, presses, agreed, report, press_delay, press_gap)
        )
        ended = call.ended()
        await asyncio.wait((ended,), timeout=hangup_after)
        keys.cancel()
        if ended.done():
            report.hung_up_by = "platform"
        else:
            report.hung_up_by = "caller"
            call.hangup()
            await call.ended()
        report.seconds = loop.time() - answered_at
        return report
    finally:
        transport.close()
        await ua.stop()


async def _press_all(
    phone: _Phone,
    presses: tuple[str, ...],
    agreed: NegotiatedAudio | None,
    report: CallReport,
    delay: float,
    gap: float,
) -> None:
    if agreed is None or agreed.telephone_event is None:
        return  # the platform did not take telephone-events: no way to send keys
    destination = (agreed.remote_host, agreed.remote_port)
    payload_type = agreed.telephone_event.payload_type
    await asyncio.sleep(delay)
    for number, item in enumerate(presses):
        if number:
            await asyncio.sleep(gap)
        for index, key in enumerate(item):
            if index:
                await asyncio.sleep(KEY_GAP_S)
            await phone.press(key, destination, payload_type)
        report.digits_sent.append(item)
