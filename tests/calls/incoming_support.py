"""Helpers for incoming-call tests: SIPp caller scenarios built step by step, and an RTP
receiver that stands for the caller's phone (it counts the prompt's packets and keeps
their arrival times, on the caller's side of the network).

The scenario's SDP offer points the platform's RTP at the receiver's port; SIPp itself
sends RFC 4733 digits by replaying its own captures (``play_pcap_audio``, needs root).
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct
from dataclasses import dataclass, field
from pathlib import Path

CAPTURES = Path("/usr/share/sip-tester")
CAPTURE_NAMES = {"#": "pound", "*": "star"}


def can_press_keys() -> bool:
    return os.geteuid() == 0 and (CAPTURES / "dtmf_2833_1.pcap").is_file()


_KEEP_PEER = (
    '<action><ereg regexp=".*" search_in="hdr" header="To:" assign_to="peer"/></action>'
)


def _from(caller: str) -> str:
    return f"<sip:{caller}@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]"


def _sdp(rtp_port: int) -> str:
    return (
        "v=0\n"
        "o=caller 53655765 2353687637 IN IP4 127.0.0.1\n"
        "s=caller\n"
        "c=IN IP4 127.0.0.1\n"
        "t=0 0\n"
        f"m=audio {rtp_port} RTP/AVP 0 8 101\n"
        "a=rtpmap:0 PCMU/8000\n"
        "a=rtpmap:8 PCMA/8000\n"
        "a=rtpmap:101 telephone-event/8000\n"
        "a=fmtp:101 0-16\n"
        "a=ptime:20\n"
        "a=sendrecv\n"
    )


@dataclass
class Caller:
    """A SIPp caller scenario: INVITE from ``caller`` to ``did``, then the steps added."""

    caller: str
    did: str
    rtp_port: int
    steps: list[str] = field(default_factory=list)
    cseq: int = 1  # of our last in-dialog request

    def _next_cseq(self) -> int:
        self.cseq += 1
        return self.cseq

    def write(self, directory: Path, name: str = "caller") -> Path:
        invite = f"""
  <send retrans="500">
    <![CDATA[

      INVITE sip:{self.did}@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: {_from(self.caller)}
      To: <sip:{self.did}@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:{self.caller}@[local_ip]:[local_port];transport=[transport]>
      Max-Forwards: 70
      Allow: INVITE, ACK, CANCEL, BYE, OPTIONS
      Content-Type: application/sdp
      Content-Length: [len]

{_sdp(self.rtp_port)}
    ]]>
  </send>
"""
        steps = "".join(self.steps)
        if "[$peer]" not in steps:  # SIPp refuses a variable that is set and never used
            steps = steps.replace(_KEEP_PEER, "")
        text = (
            '<?xml version="1.0" encoding="ISO-8859-1" ?>\n'
            f'<scenario name="{name}">\n{invite}{steps}</scenario>\n'
        )
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{name}.xml"
        path.write_text(text, encoding="iso-8859-1")
        return path

    # --- steps -----------------------------------------------------------------------------

    def provisional(self, *, ringing: bool = False) -> Caller:
        self.steps.append('  <recv response="100" optional="true"/>\n')
        if ringing:
            self.steps.append('  <recv response="180"/>\n')
        else:
            self.steps.append('  <recv response="180" optional="true"/>\n')
        return self

    def refused(self, code: int) -> Caller:
        self.provisional()
        self.steps.append(f'  <recv response="{code}"/>\n')
        self.steps.append(self._ack_non_2xx())
        return self

    def _ack_non_2xx(self) -> str:
        return f"""
  <send>
    <![CDATA[

      ACK sip:{self.did}@[remote_ip]:[remote_port] SIP/2.0
      [last_Via:]
      From: {_from(self.caller)}
      [last_To:]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
"""

    def answered(self) -> Caller:
        self.provisional()
        # The platform's To (with its tag), kept for the BYE: a re-INVITE changes [last_To:].
        self.steps.append(f'  <recv response="200" rrs="true">{_KEEP_PEER}</recv>\n')
        self.steps.append(f"""
  <send>
    <![CDATA[

      ACK [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: {_from(self.caller)}
      [last_To:]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
""")
        return self

    def pause(self, ms: int) -> Caller:
        self.steps.append(f'  <pause milliseconds="{ms}"/>\n')
        return self

    def press(self, keys: str, *, gap_ms: int = 300) -> Caller:
        for key in keys:
            capture = CAPTURES / f"dtmf_2833_{CAPTURE_NAMES.get(key, key)}.pcap"
            self.steps.append(
                f'  <nop><action><exec play_pcap_audio="{capture}"/></action></nop>\n'
            )
            self.pause(gap_ms)
        return self

    def info(self, keys: str, *, gap_ms: int = 300) -> Caller:
        """Send each key as a SIP INFO (application/dtmf-relay), as some phones do; no pause
        after the last one (a BYE that comes during a pause would abort the call)."""
        for index, key in enumerate(keys):
            if index:
                self.pause(gap_ms)
            self.steps.append(f"""
  <send retrans="500">
    <![CDATA[

      INFO [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: {_from(self.caller)}
      To: [$peer]
      Call-ID: [call_id]
      CSeq: {self._next_cseq()} INFO
      Max-Forwards: 70
      Content-Type: application/dtmf-relay
      Content-Length: [len]

      Signal={key}
      Duration=160
    ]]>
  </send>
  <recv response="200"/>
""")
        return self

    def speak(self) -> Caller:
        """Send 7 s of voice (SIPp's G.711 A-law capture); runs on while the scenario goes on."""
        capture = CAPTURES / "g711a.pcap"
        self.steps.append(f'  <nop><action><exec play_pcap_audio="{capture}"/></action></nop>\n')
        return self

    def hang_up(self) -> Caller:
        self.steps.append(f"""
  <send retrans="500">
    <![CDATA[

      BYE [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: {_from(self.caller)}
      To: [$peer]
      Call-ID: [call_id]
      CSeq: {self._next_cseq()} BYE
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="200" crlf="true"/>
""")
        return self

    def hung_up_on(self) -> Caller:
        """The platform sends BYE; answer it."""
        self.steps.append("""
  <recv request="BYE"/>
  <send>
    <![CDATA[

      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
""")
        return self

    def reinvited(self) -> Caller:
        """The platform re-INVITEs (3PCC); answer with the same media port."""
        self.steps.append(f"""
  <recv request="INVITE"/>
  <send>
    <![CDATA[

      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:{self.caller}@[local_ip]:[local_port];transport=[transport]>
      Content-Type: application/sdp
      Content-Length: [len]

{_sdp(self.rtp_port).replace("2353687637", "2353687638")}
    ]]>
  </send>
  <recv request="ACK"/>
""")
        return self

    def cancel(self) -> Caller:
        """Give up while it rings: CANCEL, then the 487 and its ACK."""
        self.steps.append(f"""
  <send>
    <![CDATA[

      CANCEL sip:{self.did}@[remote_ip]:[remote_port] SIP/2.0
      [last_Via:]
      From: {_from(self.caller)}
      To: <sip:{self.did}@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 CANCEL
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="200"/>
  <recv response="487"/>
""")
        self.steps.append(self._ack_non_2xx())
        return self


@dataclass(frozen=True)
class RtpArrival:
    at: float  # loop time
    payload_type: int
    seq: int
    timestamp: int


class RtpReceiver(asyncio.DatagramProtocol):
    """The caller's phone: keeps every RTP packet's arrival time."""

    def __init__(self) -> None:
        self.arrivals: list[RtpArrival] = []
        self.transport: asyncio.DatagramTransport | None = None
        self.port = 0

    @classmethod
    async def open(cls) -> RtpReceiver:
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        transport, receiver = await loop.create_datagram_endpoint(cls, sock=sock)
        receiver.port = sock.getsockname()[1]
        return receiver

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        if len(data) < 12 or data[0] >> 6 != 2:
            return
        pt = data[1] & 0x7F
        seq, ts = struct.unpack("!HI", data[2:8])
        self.arrivals.append(RtpArrival(asyncio.get_running_loop().time(), pt, seq, ts))

    def audio(self) -> list[RtpArrival]:
        return [a for a in self.arrivals if a.payload_type in (0, 8)]

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


def gaps_ms(arrivals: list[RtpArrival]) -> list[float]:
    return [(b.at - a.at) * 1000 for a, b in zip(arrivals, arrivals[1:], strict=False)]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]
