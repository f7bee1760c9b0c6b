"""Media through rtpengine: the prompts and the caller's digits never pass through Python.

rtpengine relays RTP between two participants of a call and can play a file to either of
them. We make each session a two-party rtpengine call (its own call-id) between the far
end (tag ``peer``) and a UDP socket of ours (tag ``voiceplane``), so rtpengine does all the
SDP and RTP work towards the far end and our socket is just the other half it needs:

Incoming call (``answer``)::

    offer   from-tag=peer        sdp=the caller's offer  -> rewritten, towards us
    answer  from-tag=peer to-tag=voiceplane  sdp=our answer to that (make_answer)
                                                          -> rewritten: what the caller gets

Outgoing call (``offer`` / ``accept_answer``)::

    offer   from-tag=voiceplane  sdp=our offer            -> rewritten: what the callee gets
    answer  from-tag=voiceplane to-tag=peer  sdp=the callee's answer

rtpengine thus negotiates the far end's codec itself (our side offers and accepts PCMU,
PCMA and telephone-event). Then ``block media`` from the peer, so its audio is not relayed
to our socket (its RFC 4733 events would still be: ``block DTMF`` too, when the DTMF log is
on). What is left for us:

* ``play`` / ``play_file``: ``play media`` to the peer's tag, of a Matroska file we write
  with one 20 ms block per frame (see ``matroska``: rtpengine paces by the file's packets,
  and a WAV's come in 256 ms lumps). rtpengine decodes it and sends it in the peer's codec.
  Files are passed by path, so rtpengine must share our filesystem (it runs beside us).
  ``play`` returns when the prompt's length has gone by; a second prompt waits for the first.
* digits: rtpengine started with ``--dtmf-log-dest=HOST:PORT`` sends a JSON datagram per key
  press; the backend listens there and routes each to its session by call-id (events from
  the peer's tag only). rtpengine 10.5 takes that destination only on its command line.
  Seen here: a press whose packets repeat the previous press's exactly (SIPp replaying the
  same capture twice in a row) is reported once; 1-2-1 gives three digits, 1-1 one.
* ``record``: ``unblock media`` while it runs: the peer's audio reaches our socket, is decoded
  and written by ``Recorder`` (no rtpengine recording daemon needed), then ``block media``.
* ``close``: ``delete`` the rtpengine call at once (no ``--delete-delay``: we own it).

The ``MediaSession`` SDP methods are synchronous, so ``offer``/``answer``/``accept_answer``
do their ng requests blocking (one to four round trips, about 0.1 ms each to a local
rtpengine); everything else is awaited. ``packets_received`` counts what reaches our
socket: the peer's audio only while recording.

Capacity (bench/ivr_media_rtpengine.py, README "IVR media, rtpengine backend"): rtpengine
10.5's player reads, decodes and re-encodes every 20 ms frame, 29-45 us of CPU a packet
here even started as ``DAEMON_OPTIONS`` and ``DAEMON_PRELOAD`` say, so 500 to 700 callers
(by run) keep the p99 interval within 5 ms of 20 ms (with ``--scheduling=fifo``: without,
the machine's other work delays its packets), and one player thread cannot send more
than about 40,000 packets a second (800 legs). 11 and later can cache a prompt's encoded
packets (``--player-cache``, keyed by the file's path: hence one file per distinct prompt).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import enum
import hashlib
import ipaddress
import logging
import secrets
import shutil
import socket
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from voiceplane.sip.errors import SipParseError
from voiceplane.sip.sdp import SessionDescription, make_answer, make_offer, negotiate

from . import g711, ng
from .audio import SAMPLE_RATE, SAMPLE_WIDTH, load_wav
from .backend import MediaBackend, MediaSession, Recording, RecordingEnd
from .bencode import Value
from .errors import MediaError, RtpError
from .matroska import pcm_to_matroska
from .recorder import Recorder, check_request
from .rtp import RtpPacket, is_rtcp

__all__ = ["DAEMON_OPTIONS", "DAEMON_PRELOAD", "RtpengineMedia", "RtpengineSession"]

log = logging.getLogger(__name__)

PEER = "peer"  # rtpengine's tag for the far end of a session
US = "voiceplane"  # and for our socket

# Options to start rtpengine 10.5 with for this backend (beside --interface, --listen-ng,
# --dtmf-log-dest and --table=-1). One media thread: the player's threads share one timer
# queue, and with 4 (the default here) each packet cost 60-70 us of CPU against 40 us with
# one (bench/ivr_media_rtpengine.py, README "IVR media, rtpengine backend").
DAEMON_OPTIONS: tuple[str, ...] = ("--media-num-threads=1",)
# And preloaded, when installed (Debian's libtcmalloc-minimal4): the player allocates and
# frees buffers for every packet, 16% of its CPU under glibc's malloc; with tcmalloc a
# packet cost about 10% less and 600 legs kept the p99 within 5 ms where 500 did.
DAEMON_PRELOAD = "libtcmalloc_minimal.so.4"
# Prompt files kept for reuse (a few MB: a 10 s prompt is 160 kB).
PROMPT_FILES = 256

_DECODERS: dict[str, Callable[[bytes], bytes]] = {
    "pcmu": g711.ulaw_decode,
    "pcma": g711.alaw_decode,
}


class RtpengineMedia(MediaBackend):
    """The ``MediaBackend`` that drives the rtpengine at ``ng_address`` (``host``, ``port``).

    ``host`` is the IP address of ours rtpengine can reach (our sockets bind there);
    ``dtmf_log`` the address rtpengine's ``--dtmf-log-dest`` points at, where we listen for
    key presses (``None``: no digits). ``start()`` before use, ``close()`` after.
    """

    def __init__(
        self,
        ng_address: tuple[str, int],
        *,
        host: str = "127.0.0.1",
        dtmf_log: tuple[str, int] | None = None,
        ng_timeout: float = ng.DEFAULT_TIMEOUT,
    ) -> None:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(f"media host must be an IP address, got {host!r}") from None
        if address.is_unspecified:
            raise ValueError(f"media host must be an address rtpengine can reach, not {host!r}")
        self._host = str(address)
        self._family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
        self._ng_address = ng_address
        self._ng_timeout = ng_timeout
        self._dtmf_address = dtmf_log
        self._client: ng.NgClient | None = None
        self._dtmf_transport: asyncio.DatagramTransport | None = None
        self._sessions: dict[str, RtpengineSession] = {}
        self._prompts: Path | None = None
        # Prompt files by their PCM's digest, oldest use first (see _prompt_file).
        self._prompt_files: collections.OrderedDict[str, asyncio.Future[Path]] = (
            collections.OrderedDict()
        )
        self._closed = False

    @property
    def client(self) -> ng.NgClient:
        if self._client is None:
            raise MediaError("the rtpengine backend is not started")
        return self._client

    @property
    def dtmf_log_address(self) -> tuple[str, int] | None:
        """Where we listen for rtpengine's DTMF log (the bound port, if 0 was asked for)."""
        if self._dtmf_transport is None:
            return None
        name = self._dtmf_transport.get_extra_info("sockname")
        return str(name[0]), int(name[1])

    @property
    def prompt_folder(self) -> Path | None:
        """Where the prompt files rtpengine plays are written (``None`` until started)."""
        return self._prompts

    async def start(self) -> None:
        """Connect, check rtpengine answers (``MediaError`` if not), listen for digits."""
        if self._client is not None:
            return
        client = await ng.NgClient.connect(self._ng_address, timeout=self._ng_timeout)
        try:
            await client.request(ng.ping())
            if self._dtmf_address is not None:
                loop = asyncio.get_running_loop()
                try:
                    self._dtmf_transport, _ = await loop.create_datagram_endpoint(
                        lambda: _Datagrams(self._on_dtmf_log), local_addr=self._dtmf_address
                    )
                except OSError as exc:
                    host, port = self._dtmf_address
                    raise MediaError(f"cannot listen for DTMF on {host}:{port}: {exc}") from exc
        except BaseException:
            await client.close()
            raise
        self._client = client
        # Prompts handed to rtpengine by path: it may run as another user, so readable.
        self._prompts = Path(tempfile.mkdtemp(prefix="voiceplane-prompts-"))
        self._prompts.chmod(0o755)

    async def open_session(self) -> RtpengineSession:
        if self._closed:
            raise MediaError("the media backend is closed")
        client = self.client
        loop = asyncio.get_running_loop()
        receiver = _Datagrams(lambda data: None)
        try:
            transport, _ = await loop.create_datagram_endpoint(
                lambda: receiver, local_addr=(self._host, 0), family=self._family
            )
        except OSError as exc:
            raise MediaError(f"cannot bind a UDP port on {self._host}: {exc}") from exc
        call_id = f"voiceplane-{secrets.token_hex(12)}"
        session = RtpengineSession(
            call_id,
            client,
            transport,
            receiver,
            self._prompt_file,
            digits_logged=self._dtmf_transport is not None,
            on_close=self._forget,
        )
        self._sessions[call_id] = session
        return session

    async def close(self) -> None:
        self._closed = True
        for session in list(self._sessions.values()):
            await session.close()
        if self._dtmf_transport is not None:
            self._dtmf_transport.close()
            self._dtmf_transport = None
        if self._client is not None:
            await self._client.close()
            self._client = None
        if self._prompts is not None:
            shutil.rmtree(self._prompts, ignore_errors=True)
            self._prompts = None
        self._prompt_files.clear()

    async def _prompt_file(self, pcm: bytes) -> Path:
        """The Matroska file rtpengine plays for ``pcm``: one per distinct prompt.

        Written once and played by every session that plays the same audio, so a prompt
        costs no write per call, and rtpengine's player cache (--player-cache, 11 and
        later), which is keyed by path, decodes it once for all. Content-addressed: a name
        never changes what it holds, so a file removed (the least recently used beyond
        ``PROMPT_FILES``) and written again is the same file to a cache.
        """
        if self._prompts is None:
            raise MediaError("the rtpengine backend is not started")
        key = hashlib.blake2b(pcm, digest_size=16).hexdigest()
        written = self._prompt_files.get(key)
        if written is None:
            written = asyncio.ensure_future(self._write_prompt(self._prompts, key, pcm))
            self._prompt_files[key] = written
            while len(self._prompt_files) > PROMPT_FILES:
                _, old = self._prompt_files.popitem(last=False)
                # rtpengine opens a file when told to play it and reads its open file
                # from then on, so removing one that is playing cuts nothing short.
                old.add_done_callback(_unlink_prompt)
        else:
            self._prompt_files.move_to_end(key)
        return await asyncio.shield(written)

    async def _write_prompt(self, folder: Path, key: str, pcm: bytes) -> Path:
        path = folder / f"{key}.mkv"
        try:
            await asyncio.to_thread(_write_prompt, path, pcm_to_matroska(pcm))
        except OSError as exc:
            self._prompt_files.pop(key, None)  # the next play of it tries again
            raise MediaError(f"cannot write the prompt for rtpengine: {exc}") from exc
        return path

    def _forget(self, session: RtpengineSession) -> None:
        self._sessions.pop(session.call_id, None)

    def _on_dtmf_log(self, data: bytes) -> None:
        if data[:1] and data[0] >> 6 == 2:
            # RTP version 2, not JSON: rtpengine sends RTCP to the port after each RTP port
            # in our SDP, and the port after a session socket's may be this one.
            return
        try:
            event = ng.parse_dtmf_log(data)
        except MediaError as exc:
            log.warning("dropped a DTMF log datagram: %s", exc)
            return
        session = self._sessions.get(event.call_id)
        if session is not None and event.source_tag == PEER:
            session._on_digit(event.digit)
        # else: another process's call on a shared rtpengine, or one already closed


class _State(enum.Enum):
    IDLE = "idle"
    OFFERED = "offered"
    ACTIVE = "active"
    CLOSED = "closed"


class RtpengineSession(MediaSession):
    """One call leg through rtpengine. Create it with ``RtpengineMedia.open_session``."""

    def __init__(
        self,
        call_id: str,
        client: ng.NgClient,
        transport: asyncio.DatagramTransport,
        receiver: _Datagrams,
        prompt_file: Callable[[bytes], Awaitable[Path]],
        *,
        digits_logged: bool,
        on_close: Callable[[RtpengineSession], None],
    ) -> None:
        self.call_id = call_id
        self._client = client
        self._transport = transport
        self._prompt_file = prompt_file
        self._digits_logged = digits_logged
        self._on_close = on_close
        name = transport.get_extra_info("sockname")
        self._host, self._port = str(name[0]), int(name[1])
        self._session_id = secrets.randbits(62)
        self._version = 0
        self._state = _State.IDLE
        self._offerer: str | None = None  # whose offer is out (OFFERED)
        self._our_offer: SessionDescription | None = None
        self._decoders: dict[int, Callable[[bytes], bytes]] = {}
        self._received = 0
        self._digits: asyncio.Queue[str] = asyncio.Queue()
        self._recorder: Recorder | None = None
        self._play_lock = asyncio.Lock()
        self._closing: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._in_rtpengine = False  # rtpengine knows the call-id: delete it on close
        self._cleanups: set[asyncio.Task[None]] = set()
        receiver.on_datagram = self._on_datagram

    # ----------------------------------------------------------------- SDP

    @property
    def local_port(self) -> int:
        """Our socket's port: where rtpengine relays to us, not what the far end sees."""
        return self._port

    @property
    def packets_received(self) -> int:
        return self._received

    def offer(self) -> bytes:
        self._require(_State.IDLE, _State.OFFERED, _State.ACTIVE, doing="make an offer")
        ours = make_offer(
            address=self._host, port=self._port, session_id=self._session_id,
            session_version=self._next_version(),
        )
        reply = self._blocking(ng.offer(self.call_id, US, ours.encode(), **self._in_dialog(US)))
        self._in_rtpengine = True
        self._our_offer, self._offerer, self._state = ours, US, _State.OFFERED
        return _sdp(reply)

    def accept_answer(self, sdp: bytes) -> None:
        self._require(_State.OFFERED, doing="accept an answer")
        if self._offerer != US or self._our_offer is None:
            raise MediaError("cannot accept an answer: the last offer was not ours")
        _parse(sdp, "answer")  # a clear error before rtpengine's
        reply = self._blocking(ng.answer(self.call_id, US, PEER, sdp))
        towards_us = _parse(_sdp(reply), "answer rtpengine relayed")
        if negotiate(self._our_offer, towards_us) is None:
            raise MediaError("the SDP answer accepts no audio stream we offered")
        self._activate(self._our_offer)

    def answer(self, offer: bytes) -> bytes:
        self._require(_State.IDLE, _State.ACTIVE, doing="answer an offer")
        _parse(offer, "offer")
        reply = self._blocking(ng.offer(self.call_id, PEER, offer, **self._in_dialog(PEER)))
        self._in_rtpengine = True
        towards_us = _parse(_sdp(reply), "offer rtpengine relayed")
        try:
            ours = make_answer(
                towards_us, address=self._host, port=self._port,
                session_id=self._session_id, session_version=self._next_version(),
            )
        except SipParseError as exc:
            raise MediaError(f"no usable audio in the SDP offer: {exc.reason}") from exc
        reply = self._blocking(ng.answer(self.call_id, PEER, US, ours.encode()))
        self._activate(ours)
        return _sdp(reply)

    def _activate(self, ours: SessionDescription) -> None:
        """Offer/answer done: stop rtpengine relaying the peer to us (see module doc)."""
        self._blocking(ng.block_media(self.call_id, PEER))
        if self._digits_logged:
            self._blocking(ng.block_dtmf(self.call_id, PEER))
        media = ours.audio
        codecs = media.voice_codecs if media is not None else ()
        self._decoders = {
            codec.payload_type: _DECODERS[codec.name.lower()]
            for codec in codecs
            if codec.name.lower() in _DECODERS
        }
        self._offerer, self._state = None, _State.ACTIVE

    def _in_dialog(self, offerer: str) -> dict[str, Value]:
        # A re-offer names the other side too, as the to-tag of an in-dialog request would.
        if self._state is not _State.ACTIVE:
            return {}
        return {"to-tag": (PEER if offerer == US else US).encode()}

    def _next_version(self) -> int:
        self._version += 1
        return self._version

    # ----------------------------------------------------------------- playing

    async def play(self, pcm: bytes) -> None:
        if len(pcm) % SAMPLE_WIDTH:
            raise MediaError(f"PCM must be 16-bit samples: {len(pcm)} bytes is an odd length")
        if self._state is _State.CLOSED or not pcm:
            return
        self._require(_State.ACTIVE, doing="play")
        async with self._play_lock:  # one prompt after the other, as on a phone line
            if not self._is_closed():
                await self._play(pcm)

    async def play_file(self, path: Path | str) -> None:
        # Read and converted here (sox), so every prompt reaches rtpengine in 20 ms blocks.
        await self.play(await load_wav(path))

    async def _play(self, pcm: bytes) -> None:
        path = await self._prompt_file(pcm)
        await self._client.request(ng.play_media(self.call_id, PEER, file=str(path)))
        try:
            await self._until_closed(len(pcm) / (SAMPLE_RATE * SAMPLE_WIDTH))
        except asyncio.CancelledError:
            if not self._is_closed():  # the caller stopped listening, the call goes on
                self._background(ng.stop_media(self.call_id, PEER))
            raise

    # ----------------------------------------------------------------- receiving

    def dtmf(self) -> asyncio.Queue[str]:
        return self._digits

    def _on_digit(self, digit: str) -> None:
        if self._state is _State.CLOSED:
            return
        if self._recorder is not None and self._recorder.key(digit):
            return  # the key that ends a recording is its result, not a digit to gather
        self._digits.put_nowait(digit)

    async def record(self, path: Path | str, max_s: float, stop_on_digits: str = "") -> Recording:
        check_request(max_s, stop_on_digits)
        if self._recorder is not None:
            raise MediaError("this session is already recording")
        if self._state is not _State.CLOSED:
            self._require(_State.ACTIVE, doing="record")
        loop = asyncio.get_running_loop()
        recorder = Recorder(path, max_s, stop_on_digits, loop.create_future())
        if self._state is _State.CLOSED:
            return recorder.close()  # an empty file, as the call is already over
        self._recorder = recorder
        timer = loop.call_later(max_s, recorder.finish, RecordingEnd.MAX_LENGTH)
        try:
            await self._client.request(ng.unblock_media(self.call_id, PEER))
            await recorder.done
        finally:
            timer.cancel()
            self._recorder = None
            result = recorder.close()
            if not self._is_closed():
                self._background(ng.block_media(self.call_id, PEER))
        return result

    def _on_datagram(self, data: bytes) -> None:
        if is_rtcp(data):
            return
        try:
            packet = RtpPacket.parse(data)
        except RtpError:
            return
        self._received += 1
        recorder = self._recorder
        decode = self._decoders.get(packet.payload_type)
        if recorder is not None and decode is not None:
            recorder.audio(packet.ssrc, packet.sequence, packet.timestamp, decode(packet.payload))

    # ----------------------------------------------------------------- lifetime

    async def close(self) -> None:
        if self._state is _State.CLOSED:
            return
        self._state = _State.CLOSED
        if not self._closing.done():
            self._closing.set_result(None)
        if self._recorder is not None:
            self._recorder.finish(RecordingEnd.CLOSED)
        self._transport.close()
        self._on_close(self)
        if self._in_rtpengine:
            try:
                await self._client.request(ng.delete(self.call_id, delay=0))
            except MediaError as exc:  # rtpengine times the call out by itself in the end
                log.warning("rtpengine did not delete %s: %s", self.call_id, exc)

    async def _until_closed(self, seconds: float) -> None:
        """Sleep ``seconds``; ``close()`` ends it early."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._closing), seconds)

    # ----------------------------------------------------------------- helpers

    def _is_closed(self) -> bool:
        # A method, not an inline test: after an await the state may have changed.
        return self._state is _State.CLOSED

    def _require(self, *states: _State, doing: str) -> None:
        if self._state not in states:
            raise MediaError(f"cannot {doing} in state {self._state.value}")

    def _blocking(self, command: ng.Command) -> dict[str, Value]:
        return self._client.request_blocking(command)

    def _background(self, command: ng.Command) -> None:
        """Send a clean-up request nobody waits for; a failure is only logged."""

        async def send() -> None:
            try:
                await self._client.request(command)
            except MediaError as exc:
                log.warning("rtpengine %s for %s failed: %s", command.name, self.call_id, exc)

        task = asyncio.ensure_future(send())
        self._cleanups.add(task)  # a reference, so the task is not collected half-way
        task.add_done_callback(self._cleanups.discard)


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, on_datagram: Callable[[bytes], None]) -> None:
        self.on_datagram = on_datagram

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.on_datagram(data)

    def error_received(self, exc: Exception) -> None:
        log.debug("rtpengine backend socket error: %s", exc)


def _sdp(reply: dict[str, Value]) -> bytes:
    sdp = reply.get("sdp")
    if not isinstance(sdp, bytes):
        raise MediaError("rtpengine's reply has no SDP")
    return sdp


def _parse(sdp: bytes, what: str) -> SessionDescription:
    try:
        return SessionDescription.parse(sdp)
    except SipParseError as exc:
        raise MediaError(f"unreadable SDP {what}: {exc.reason}") from exc


def _write_prompt(path: Path, data: bytes) -> None:
    # Under a temporary name first: rtpengine never opens a half-written file.
    partial = path.with_suffix(f".{secrets.token_hex(4)}.partial")
    partial.write_bytes(data)
    partial.chmod(0o644)  # rtpengine may run as another user
    partial.replace(path)


def _unlink_prompt(written: asyncio.Future[Path]) -> None:
    if not written.cancelled() and written.exception() is None:
        written.result().unlink(missing_ok=True)
