"""In-process media: RTP over UDP with G.711 and RFC 4733 DTMF, one socket per call leg.

Each session binds an even UDP port of the backend's range (RFC 3550 section 11; RTCP is
neither sent nor expected), negotiates SDP through ``voiceplane.sip.sdp`` and sends prompts
paced by one ``Ticker`` per frame size that the backend shares among all its sessions: one
timer on an absolute grid of the loop clock sends every playing session's next frame, so
delays never add up and hundreds of callers cost one wake-up per 20 ms. Media is
symmetric: we send to the address and port of the remote SDP.

Python costs about 35 us per packet here, so one core carries a few hundred legs; beyond
that the rtpengine backend is the answer (DESIGN.md, Growing past one machine).
"""

from __future__ import annotations

import asyncio
import enum
import errno
import ipaddress
import logging
import secrets
import socket
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from voiceplane.sip.errors import SipParseError
from voiceplane.sip.sdp import (
    SENDONLY,
    SENDRECV,
    NegotiatedAudio,
    SessionDescription,
    make_answer,
    make_offer,
    negotiate,
)

from . import g711
from .audio import SAMPLE_RATE, SAMPLE_WIDTH, load_wav
from .backend import MediaBackend, MediaSession, Recording, RecordingEnd
from .dtmf import DtmfDetector, KeyPress
from .errors import MediaError, RtpError
from .recorder import Recorder, check_request
from .rtp import HEADER_SIZE, RtpPacket, TelephoneEvent, is_rtcp, plain_header, rtp_header
from .ticker import Ticker

__all__ = ["EmbeddedMedia", "EmbeddedSession"]

log = logging.getLogger(__name__)

# Voice codecs we can send: lower-case encoding name -> PCM encoder.
_ENCODERS: dict[str, Callable[[bytes], bytes]] = {
    "pcmu": g711.ulaw_encode,
    "pcma": g711.alaw_encode,
}
# Voice codecs we can record: lower-case encoding name -> PCM decoder.
_DECODERS: dict[str, Callable[[bytes], bytes]] = {
    "pcmu": g711.ulaw_decode,
    "pcma": g711.alaw_decode,
}
_PTIME_RANGE = (10, 60)  # ms; outside it the remote's a=ptime is not worth honouring


class _State(enum.Enum):
    IDLE = "idle"  # no SDP yet
    OFFERED = "offered"  # our offer is out, waiting for the answer
    ACTIVE = "active"  # offer/answer done: media may flow
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class _Sender:
    """What play() needs from one negotiation; rebuilt when a re-offer changes it."""

    negotiated: NegotiatedAudio
    destination: tuple[str, int] | None  # None: the peer does not want media (hold)
    payload_type: int
    encode: Callable[[bytes], bytes]
    frame_samples: int
    resolved: bool  # destination is an IP address, or None (SDP may name a host)


@dataclass(slots=True)
class _Playing:
    """The prompt a session is playing: its PCM and how far the ticker has sent it."""

    pcm: bytes
    frame_bytes: int
    encode: Callable[[bytes], bytes]
    frames: list[bytes | None]  # encoded frames, shared by every session playing the prompt
    done: asyncio.Future[None]
    index: int = 0


# Prompts whose encoded frames are kept: a flow plays the same few prompts to every caller.
_PROMPT_CACHE = 32


class _Playout:
    """What the sessions of one backend share for sending: tickers and encoded prompts."""

    def __init__(self) -> None:
        self._tickers: dict[int, Ticker] = {}  # by frame size in samples (20 ms: 160)
        self._prompts: OrderedDict[tuple[bytes, int, object], list[bytes | None]] = OrderedDict()

    def ticker(self, frame_samples: int) -> Ticker:
        """The ticker every session with this frame size plays on (created on first use)."""
        ticker = self._tickers.get(frame_samples)
        if ticker is None:
            clock = asyncio.get_running_loop()
            ticker = self._tickers[frame_samples] = Ticker(frame_samples / SAMPLE_RATE, clock)
        return ticker

    def frames(
        self, pcm: bytes, frame_bytes: int, encode: Callable[[bytes], bytes]
    ) -> list[bytes | None]:
        """The encoded frames of ``pcm``, filled in as they are first sent.

        G.711 encoding is most of the cost of a packet; 300 callers hearing one greeting
        pay it once. (The bytes' hash is computed once and kept by Python.)
        """
        key = (pcm, frame_bytes, encode)
        frames = self._prompts.get(key)
        if frames is None:
            frames = self._prompts[key] = [None] * -(-len(pcm) // frame_bytes)
            if len(self._prompts) > _PROMPT_CACHE:
                self._prompts.popitem(last=False)
        else:
            self._prompts.move_to_end(key)
        return frames


class EmbeddedMedia(MediaBackend):
    """The in-process ``MediaBackend``.

    ``host`` is the IP address sessions bind to and announce in SDP, so it must be one the
    peer can reach (not ``0.0.0.0``: in SDP that means "on hold").
    """

    def __init__(self, host: str, port_range: tuple[int, int] = (20000, 30000)) -> None:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(f"media host must be an IP address, got {host!r}") from None
        if address.is_unspecified:
            raise ValueError(f"media host must be a reachable address, not {host!r}")
        low, high = port_range
        if not 1 <= low <= high <= 65535:
            raise ValueError(f"bad RTP port range {port_range}: want 1 <= low <= high <= 65535")
        self._ports = range(low + low % 2, high + 1, 2)  # RTP ports are even
        if not self._ports:
            raise ValueError(f"RTP port range {port_range} holds no even port")
        self._host = str(address)
        self._family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
        # Ports are handed out round the range from a random start: a port just released
        # is the last to be reused, so late packets of an old call miss the new one.
        self._cursor = secrets.randbelow(len(self._ports))
        self._sessions: set[EmbeddedSession] = set()
        self._playout = _Playout()
        self._closed = False

    @property
    def host(self) -> str:
        return self._host

    async def open_session(self) -> EmbeddedSession:
        if self._closed:
            raise MediaError("the media backend is closed")
        sock = self._bind()
        loop = asyncio.get_running_loop()
        port = sock.getsockname()[1]
        try:
            transport, protocol = await loop.create_datagram_endpoint(_Receiver, sock=sock)
        except BaseException:
            sock.close()
            raise
        session = EmbeddedSession(
            self._host, port, transport, protocol, self._sessions.discard, self._playout
        )
        self._sessions.add(session)
        return session

    async def close(self) -> None:
        self._closed = True
        for session in list(self._sessions):
            await session.close()

    def _bind(self) -> socket.socket:
        for port in self._candidates():
            sock = socket.socket(self._family, socket.SOCK_DGRAM)
            try:
                sock.setblocking(False)
                sock.bind((self._host, port))
            except OSError as exc:
                sock.close()
                if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                    continue
                raise MediaError(f"cannot bind RTP on {self._host}:{port}: {exc}") from exc
            return sock
        raise MediaError(
            f"no free RTP port on {self._host} in {self._ports.start}-{self._ports.stop - 1}"
        )

    def _candidates(self) -> Iterator[int]:
        count = len(self._ports)
        for _ in range(count):
            port = self._ports[self._cursor]
            self._cursor = (self._cursor + 1) % count
            yield port


class _Receiver(asyncio.DatagramProtocol):
    """Forwards datagrams to the session; exists so the session's own API stays clean."""

    def __init__(self) -> None:
        self.on_datagram: Callable[[bytes], None] = lambda data: None
        self.on_lost: Callable[[], None] = lambda: None

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.on_datagram(data)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable and the like: the peer is gone or not there yet. RTP over
        # UDP carries on; the engine learns about dead calls from SIP.
        log.debug("RTP socket error: %s", exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self.on_lost()


class EmbeddedSession(MediaSession):
    """One call leg's RTP stream. Create it with ``EmbeddedMedia.open_session``."""

    def __init__(
        self,
        host: str,
        port: int,
        transport: asyncio.DatagramTransport,
        receiver: _Receiver,
        on_close: Callable[[EmbeddedSession], None],
        playout: _Playout,
    ) -> None:
        self._host = host
        self._port = port
        self._transport = transport
        self._on_close = on_close
        self._playout = playout
        self._state = _State.IDLE
        self._local: SessionDescription | None = None
        self._session_id = secrets.randbits(62)
        self._sender: _Sender | None = None
        self._event_types: frozenset[int] = frozenset()
        self._decoders: dict[int, Callable[[bytes], bytes]] = {}
        self._received = 0
        self._digits: asyncio.Queue[str] = asyncio.Queue()
        self._presses: list[KeyPress] = []
        self._detector = DtmfDetector()
        self._recorder: Recorder | None = None
        # RFC 3550 section 5.1: random initial sequence number, timestamp and SSRC.
        self._ssrc = secrets.randbits(32)
        self._sequence = secrets.randbits(16)
        self._timestamp = secrets.randbits(32)
        self._media_end: float | None = None  # loop time the last frame sent runs out
        self._play_lock = asyncio.Lock()
        self._playing: _Playing | None = None
        self._resolving: asyncio.Future[_Sender | None] | None = None
        receiver.on_datagram = self._on_datagram
        receiver.on_lost = self._on_lost

    # ----------------------------------------------------------------- SDP

    @property
    def local_port(self) -> int:
        return self._port

    @property
    def packets_received(self) -> int:
        return self._received

    @property
    def negotiated(self) -> NegotiatedAudio | None:
        """The outcome of the last offer/answer, ``None`` before."""
        return self._sender.negotiated if self._sender is not None else None

    def offer(self) -> bytes:
        """Our offer; again after the call is up, a re-offer (same version if unchanged)."""
        # Also while OFFERED: the last offer was refused (488) or never answered.
        self._require(_State.IDLE, _State.OFFERED, _State.ACTIVE, doing="make an offer")
        local = make_offer(address=self._host, port=self._port, session_id=self._session_id)
        self._set_local(local)
        self._state = _State.OFFERED
        return self._current_local().encode()

    def accept_answer(self, sdp: bytes) -> None:
        self._require(_State.OFFERED, doing="accept an answer")
        remote = _parse(sdp, "answer")
        negotiated = negotiate(self._current_local(), remote)
        if negotiated is None:
            raise MediaError("the SDP answer accepts no audio stream we offered")
        self._commit(self._sender_for(negotiated))

    def answer(self, offer: bytes) -> bytes:
        self._require(_State.IDLE, _State.ACTIVE, doing="answer an offer")
        remote = _parse(offer, "offer")
        try:
            local = make_answer(
                remote, address=self._host, port=self._port, session_id=self._session_id
            )
        except SipParseError as exc:
            raise MediaError(f"no usable audio in the SDP offer: {exc.reason}") from exc
        negotiated = negotiate(local, remote)
        if negotiated is None:  # make_answer accepted a stream, so this is a bug if it happens
            raise MediaError("no usable audio in the SDP offer")
        sender = self._sender_for(negotiated)  # before changing anything: may raise
        self._set_local(local)
        self._commit(sender)
        return self._current_local().encode()

    # ----------------------------------------------------------------- sending

    async def play(self, pcm: bytes) -> None:
        if len(pcm) % SAMPLE_WIDTH:
            raise MediaError(f"PCM must be 16-bit samples: {len(pcm)} bytes is an odd length")
        if self._state is _State.CLOSED:
            return
        if self._sender is None:
            raise MediaError("cannot play before the SDP offer/answer is complete")
        async with self._play_lock:  # two prompts at once would interleave: queue them
            await self._play(pcm)

    async def _play(self, pcm: bytes) -> None:
        sender = await self._resolved(self._sender)
        if sender is None or not pcm:
            return  # closed while resolving, or nothing to play
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        frame_bytes = sender.frame_samples * SAMPLE_WIDTH
        pcm = bytes(pcm)  # the same object if bytes already; a bytearray is no cache key
        frames = self._playout.frames(pcm, frame_bytes, sender.encode)
        self._playing = _Playing(pcm, frame_bytes, sender.encode, frames, done)
        ticker = self._playout.ticker(sender.frame_samples)
        ticker.add(self)  # the shared ticker sends one frame per tick: see tick()
        try:
            await done
        finally:
            self._playing = None
            ticker.discard(self)

    def tick(self, deadline: float) -> bool:
        """Send the playing prompt's frame due at ``deadline``; ``True`` once all is sent.

        Called by the backend's shared ``Ticker``, never directly.
        """
        playing = self._playing
        if playing is None or playing.done.done():
            return True
        if self._state is _State.CLOSED:
            _wake(playing.done)
            return True
        sender = self._sender
        assert sender is not None  # play() waited for the offer/answer
        if not sender.resolved:
            # A re-offer named a host: resolve it meanwhile, as if on hold till then.
            self._resolve_later(sender, playing)
            sender = replace(sender, destination=None)
        index = playing.index
        marker = index == 0  # a talkspurt starts
        if marker and self._media_end is not None and deadline > self._media_end:
            # Keep the timestamp running with real time across the silence between prompts
            # (RFC 3550 section 5.1), so the far end's playout clock stays right.
            gap = round((deadline - self._media_end) * SAMPLE_RATE)
            self._timestamp = (self._timestamp + gap) & 0xFFFFFFFF
        frame_bytes = playing.frame_bytes
        if sender.destination is not None:
            payload = playing.frames[index] if sender.encode is playing.encode else None
            if payload is None:
                offset = index * frame_bytes
                frame = playing.pcm[offset : offset + frame_bytes].ljust(frame_bytes, b"\0")
                payload = sender.encode(frame)
                if sender.encode is playing.encode:
                    playing.frames[index] = payload
            self._send(sender, payload, marker=marker)
        # The timestamp counts media time, sent or not (held): it runs on regardless.
        samples = frame_bytes // SAMPLE_WIDTH
        self._timestamp = (self._timestamp + samples) & 0xFFFFFFFF
        self._media_end = deadline + samples / SAMPLE_RATE
        playing.index = index = index + 1
        if index >= len(playing.frames):
            _wake(playing.done)
            return True
        return False

    def _send(self, sender: _Sender, payload: bytes, *, marker: bool) -> None:
        assert sender.destination is not None
        header = rtp_header(
            sender.payload_type, self._sequence, self._timestamp, self._ssrc, marker=marker
        )
        self._transport.sendto(header + payload, sender.destination)
        self._sequence = (self._sequence + 1) & 0xFFFF  # counts packets sent

    def _resolve_later(self, sender: _Sender, playing: _Playing) -> None:
        if self._resolving is not None:
            return

        def resolved(task: asyncio.Task[_Sender | None]) -> None:
            self._resolving = None
            error = None if task.cancelled() else task.exception()
            if error is not None and not playing.done.done():
                playing.done.set_exception(error)

        self._resolving = asyncio.ensure_future(self._resolved(sender))
        self._resolving.add_done_callback(resolved)

    async def _resolved(self, sender: _Sender | None) -> _Sender | None:
        """``sender`` with its destination as an IP address (SDP may name a host)."""
        if sender is None or self._state is _State.CLOSED:
            return None
        if sender.resolved or sender.destination is None:
            return sender
        host, port = sender.destination
        loop = asyncio.get_running_loop()
        family = self._transport.get_extra_info("socket").family
        try:
            infos = await loop.getaddrinfo(host, port, family=family, type=socket.SOCK_DGRAM)
        except OSError as exc:
            raise MediaError(f"cannot resolve the RTP host {host!r}: {exc}") from exc
        if not infos:
            raise MediaError(f"the RTP host {host!r} has no address")
        address = infos[0][4]
        resolved = replace(
            sender, destination=(str(address[0]), int(address[1])), resolved=True
        )
        if self._sender is sender:
            self._sender = resolved
        return resolved

    # ----------------------------------------------------------------- receiving

    def dtmf(self) -> asyncio.Queue[str]:
        return self._digits

    @property
    def key_presses(self) -> tuple[KeyPress, ...]:
        """Every key press received so far, with its RTP timestamp and duration."""
        return tuple(self._presses)

    async def play_file(self, path: Path | str) -> None:
        await self.play(await load_wav(path))

    async def record(
        self,
        path: Path | str,
        max_s: float,
        stop_on_digits: str = "",
        *,
        silence_s: float | None = None,
    ) -> Recording:
        """``MediaSession.record``; with ``silence_s``, also ends after that long without
        voice (``RecordingEnd.SILENCE``), counted from the start as well."""
        check_request(max_s, stop_on_digits, silence_s)
        if self._recorder is not None:
            raise MediaError("this session is already recording")
        if self._state is not _State.CLOSED and self._sender is None:
            raise MediaError("cannot record before the SDP offer/answer is complete")
        loop = asyncio.get_running_loop()
        recorder = Recorder(path, max_s, stop_on_digits, loop.create_future(), silence_s=silence_s)
        if self._state is _State.CLOSED:
            return recorder.close()  # an empty file, as the call is already over
        self._recorder = recorder
        timer = loop.call_later(max_s, recorder.finish, RecordingEnd.MAX_LENGTH)
        try:
            await recorder.done
        finally:
            timer.cancel()
            self._recorder = None
            result = recorder.close()
        return result

    def _on_datagram(self, data: bytes) -> None:
        plain = plain_header(data)
        if plain is None:  # the rare packet with CSRCs, extension or padding, or not RTP
            if is_rtcp(data):
                return
            try:
                packet = RtpPacket.parse(data)
            except RtpError:
                return  # not RTP: stray or hostile traffic is not counted
            fields = packet.payload_type, packet.sequence, packet.timestamp, packet.ssrc
            payload = packet.payload
        else:
            fields, payload = plain, data[HEADER_SIZE:]
        self._received += 1
        payload_type, sequence, timestamp, ssrc = fields
        if payload_type in self._event_types:
            self._on_event(RtpPacket(payload_type, sequence, timestamp, ssrc, payload))
            return
        recorder = self._recorder
        if recorder is None:
            return
        # Comfort noise and codecs we cannot decode are left out; the jitter buffer fills
        # the time they covered with silence, from the timestamps.
        decode = self._decoders.get(payload_type)
        if decode is not None:
            recorder.audio(ssrc, sequence, timestamp, decode(payload))

    def _on_event(self, packet: RtpPacket) -> None:
        try:
            event = TelephoneEvent.parse(packet.payload)
        except RtpError:
            return
        press = self._detector.feed(packet, event, asyncio.get_running_loop().time())
        if press is None:
            return
        self._presses.append(press)
        if self._recorder is not None and self._recorder.key(press.digit):
            return  # the key that ends a recording is its result, not a digit to gather
        self._digits.put_nowait(press.digit)

    # ----------------------------------------------------------------- lifetime

    async def close(self) -> None:
        if self._state is _State.CLOSED:
            return
        self._state = _State.CLOSED
        if self._playing is not None:
            _wake(self._playing.done)
        if self._recorder is not None:
            self._recorder.finish(RecordingEnd.CLOSED)
        self._transport.close()
        self._on_close(self)

    def _on_lost(self) -> None:
        # The socket went away under us (closed, or an OS error): stop as if close()d.
        if self._state is not _State.CLOSED:
            self._state = _State.CLOSED
            if self._playing is not None:
                _wake(self._playing.done)
            if self._recorder is not None:
                self._recorder.finish(RecordingEnd.CLOSED)
            self._on_close(self)

    # ----------------------------------------------------------------- helpers

    def _require(self, *states: _State, doing: str) -> None:
        if self._state not in states:
            raise MediaError(f"cannot {doing} in state {self._state.value}")

    def _current_local(self) -> SessionDescription:
        assert self._local is not None
        return self._local

    def _set_local(self, new: SessionDescription) -> None:
        """Adopt a new local SDP: same version if unchanged, else the next (RFC 3264 s. 8)."""
        old = self._local
        if old is not None:
            same = replace(new, session_version=old.session_version)
            new = old if same == old else replace(same, session_version=old.session_version + 1)
        self._local = new
        self._event_types = _event_types(new, None)
        self._decoders = _decoders(new, None)

    def _commit(self, sender: _Sender) -> None:
        self._sender = sender
        self._event_types = _event_types(self._current_local(), sender.negotiated)
        self._decoders = _decoders(self._current_local(), sender.negotiated)
        self._state = _State.ACTIVE

    def _sender_for(self, negotiated: NegotiatedAudio) -> _Sender:
        codec = negotiated.codec
        encode = _ENCODERS.get(codec.name.lower())
        if encode is None or codec.clock_rate != SAMPLE_RATE or codec.channels != 1:
            raise MediaError(f"cannot send {codec.name}/{codec.clock_rate}: G.711 only")
        host, port = negotiated.remote_host, negotiated.remote_port
        if _is_ip(host) and _ip_family(host) != self._transport.get_extra_info("socket").family:
            raise MediaError(f"the RTP address {host} is not of our address family ({self._host})")
        wants_media = negotiated.direction in (SENDRECV, SENDONLY) and port != 0
        if _is_ip(host) and ipaddress.ip_address(host).is_unspecified:
            wants_media = False  # c=0.0.0.0: RFC 2543 hold
        ptime = min(max(negotiated.ptime, _PTIME_RANGE[0]), _PTIME_RANGE[1])
        return _Sender(
            negotiated=negotiated,
            destination=(host, port) if wants_media else None,
            resolved=not wants_media or _is_ip(host),
            payload_type=codec.payload_type,
            encode=encode,
            frame_samples=SAMPLE_RATE * ptime // 1000,
        )


def _parse(sdp: bytes, what: str) -> SessionDescription:
    try:
        return SessionDescription.parse(sdp)
    except SipParseError as exc:
        raise MediaError(f"unreadable SDP {what}: {exc.reason}") from exc


def _event_types(local: SessionDescription, negotiated: NegotiatedAudio | None) -> frozenset[int]:
    """Payload types that carry telephone-events to us.

    Events should come with the number our SDP declared (RFC 3264 section 6.1); some phones
    use their own number instead, so that one counts too, unless it is a voice codec of ours.
    """
    media = local.audio
    if negotiated is not None and negotiated.index < len(local.media):
        media = local.media[negotiated.index]
    if media is None:
        return frozenset()
    ours = media.telephone_event
    types = {ours.payload_type} if ours is not None else set()
    theirs = negotiated.telephone_event if negotiated is not None else None
    if theirs is not None and media.codec(theirs.payload_type) is None:
        types.add(theirs.payload_type)
    return frozenset(types)


def _decoders(
    local: SessionDescription, negotiated: NegotiatedAudio | None
) -> dict[int, Callable[[bytes], bytes]]:
    """Payload types of voice we can decode: those our SDP declared, and, like
    telephone-events, the peer's own number for the negotiated codec if it is free."""
    media = local.audio
    if negotiated is not None and negotiated.index < len(local.media):
        media = local.media[negotiated.index]
    codecs = list(media.voice_codecs) if media is not None else []
    theirs = negotiated.codec if negotiated is not None else None
    if theirs is not None and (media is None or media.codec(theirs.payload_type) is None):
        codecs.append(theirs)
    decoders = {}
    for codec in codecs:
        decode = _DECODERS.get(codec.name.lower())
        if decode is not None and codec.clock_rate == SAMPLE_RATE and codec.channels == 1:
            decoders[codec.payload_type] = decode
    return decoders


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _ip_family(host: str) -> int:
    return socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
