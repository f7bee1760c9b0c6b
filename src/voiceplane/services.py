"""The parts that ``voiceplane serve`` runs, assembled from the settings in one place.

They start in list order and stop in reverse (see :func:`voiceplane.server.serve`), so a
service that another one uses goes first: the store, SIP, media, the sandbox operator (only
when no trunk is configured), the callback dispatcher, and the call engine, which needs
all of them.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from prometheus_client import CollectorRegistry
from sqlalchemy.orm import Session, sessionmaker

from voiceplane.callbacks.child import ChildSender
from voiceplane.callbacks.dispatcher import Dispatcher, DispatcherSettings
from voiceplane.calls.commands import CallCommands
from voiceplane.calls.engine import CallEngine, EngineSettings
from voiceplane.calls.incoming import IncomingCalls, IncomingSettings
from voiceplane.calls.reporting import Handover, LeasedReports
from voiceplane.calls.trunk import Trunk
from voiceplane.config import Config
from voiceplane.media import g711
from voiceplane.media.embedded import EmbeddedMedia
from voiceplane.media.rtpengine import RtpengineMedia
from voiceplane.metrics import PlatformCollector, registry_for
from voiceplane.policy.dnd import DndRegistry
from voiceplane.sandbox.operator import SandboxOperator
from voiceplane.server import Service
from voiceplane.sip.addressing import Address
from voiceplane.sip.digest import Credentials
from voiceplane.sip.timers import TimerValues
from voiceplane.sip_service import SipService
from voiceplane.store.db import reader_sessions
from voiceplane.store.service import StoreService
from voiceplane.store.writer import StoreWriter


@dataclass
class Platform:
    """Everything ``serve`` runs: the services in start order, and what the API needs."""

    services: list[Service]
    sessions: sessionmaker[Session]
    writer: StoreWriter
    commands: CallCommands
    engine: CallEngine
    sandbox: SandboxOperator | None
    metrics: CollectorRegistry
    dnd: DndRegistry | None = None  # the DND registry the engine checks promotional calls on


class _MediaService:
    def __init__(self, media: EmbeddedMedia | RtpengineMedia) -> None:
        self.media = media

    async def start(self) -> None:
        if isinstance(self.media, RtpengineMedia):
            await self.media.start()  # fails the start if rtpengine does not answer
        # The G.711 encoder's tables (0.3 s of work), now rather than in the loop at the
        # first prompt.
        await asyncio.to_thread(g711.ulaw_encode, b"\0\0")
        await asyncio.to_thread(g711.alaw_encode, b"\0\0")

    async def stop(self) -> None:
        await self.media.close()


def _media(config: Config) -> EmbeddedMedia | RtpengineMedia:
    """The media backend ``[media] backend`` names."""
    settings = config.media
    if settings.backend == "rtpengine":
        dtmf_log = settings.rtpengine_dtmf_log
        return RtpengineMedia(
            (settings.rtpengine_ng.host, settings.rtpengine_ng.port),
            host=config.media_address,
            dtmf_log=(dtmf_log.host, dtmf_log.port) if dtmf_log is not None else None,
        )
    return EmbeddedMedia(
        config.media_address, port_range=(settings.rtp_port_min, settings.rtp_port_max)
    )


def build_platform(config: Config) -> Platform:
    """The whole platform for ``config``, not yet started."""
    store = StoreService(config.effective_store_url)
    sip = SipService(config.sip)
    media = _media(config)
    sandbox: SandboxOperator | None = None
    services: list[Service] = [store, sip, _MediaService(media)]
    if config.trunk.is_sandbox:
        sandbox = SandboxOperator(
            config.sandbox,
            timer_values=TimerValues(
                t1=config.sip.t1_ms / 1000, t2=config.sip.t2_ms / 1000, t4=config.sip.t4_ms / 1000
            ),
        )
        services.append(sandbox)
    credentials = None
    if config.trunk.username and config.trunk.password is not None:
        credentials = Credentials(
            config.trunk.username, config.trunk.password.get_secret_value(), config.trunk.realm
        )

    def trunk() -> Trunk:
        if sandbox is not None:
            destination = sandbox.address
        else:
            assert config.trunk.host is not None
            destination = Address(
                config.trunk.host.host, config.trunk.host.port, config.trunk.transport
            )
        return Trunk(sip.ua, destination, credentials)

    callback_settings = DispatcherSettings(**config.callbacks.model_dump())
    dispatcher = Dispatcher(
        store.sessions,
        writer=store.writer,
        settings=callback_settings,
        # The HTTP attempts in a child process: on another core than the store writer and
        # the engine (bench/callbacks.py); it ends with serve, even when serve is killed.
        sender=ChildSender(callback_settings.sender),
    )
    # Imports (voiceplane dnd import, the admin API) write new generations in the data
    # directory; the registry switches to them by itself.
    dnd = DndRegistry.in_data_dir(config.data.dir)
    engine = CallEngine(
        writer=store.writer,
        trunk=trunk,
        media=media,
        settings=EngineSettings(
            prompt_cache=config.data.dir / "prompts",
            media_dir=config.data.dir / "media",
            recordings_dir=config.data.dir / "recordings",
            max_cps=config.trunk.max_cps,
            cps_burst=config.trunk.cps_burst,
            queue_timeout_s=config.trunk.queue_timeout,
        ),
        on_reported=dispatcher.wake,
        dnd=dnd,
    )
    engine.handover = Handover(LeasedReports(config.callbacks.lease_s), dispatcher.send_now)
    # Incoming calls hold channels in the engine's counter, so both directions share limits.
    incoming = IncomingCalls(
        writer=store.writer, media=media, channels=engine.channels, trunk=trunk,
        settings=IncomingSettings(
            media_dir=config.data.dir / "media", recordings_dir=config.data.dir / "recordings",
            tts_cache=config.data.dir / "prompts",
        ),
        on_reported=dispatcher.wake, keys=engine.keys,
    )  # fmt: skip
    incoming.handover = engine.handover
    sip.incoming = incoming
    # The dispatcher before the engine, so it stops after it: the engine's last callbacks
    # (calls it ended at the stop) are stored first; whatever the dispatcher cannot send
    # before it stops stays in the outbox for the next start. Nothing is lost either way.
    services += [dispatcher, engine, incoming]
    metrics = registry_for(
        PlatformCollector(reader_sessions(store.sessions), engine, dispatcher)
    )
    return Platform(
        services, store.sessions, store.writer, engine, engine, sandbox, metrics, dnd=dnd
    )


def build_services(config: Config) -> list[Service]:
    """The long-running services for ``config``, in start order."""
    return build_platform(config).services
