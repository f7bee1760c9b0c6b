"""The engine's doorbell rung from another thread (serve's HTTP thread)."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field

from voiceplane.calls.commands import OnEngineLoop


@dataclass
class Rings:
    """A doorbell noting each ring and the thread it came on."""

    heard: list[tuple[str, str, int]] = field(default_factory=list)

    def call_queued(self, call_id: str) -> None:
        self.heard.append(("queued", call_id, threading.get_ident()))

    def cancel_requested(self, call_id: str) -> None:
        self.heard.append(("cancel", call_id, threading.get_ident()))


async def test_rings_from_another_thread_are_heard_on_the_engines_loop() -> None:
    rings = Rings()
    doorbell = OnEngineLoop(rings, asyncio.get_running_loop())

    def ring_from_elsewhere() -> int:
        doorbell.call_queued("VC1")
        doorbell.cancel_requested("VC2")
        return threading.get_ident()

    elsewhere = await asyncio.to_thread(ring_from_elsewhere)
    await asyncio.sleep(0)
    here = threading.get_ident()
    assert elsewhere != here
    assert rings.heard == [("queued", "VC1", here), ("cancel", "VC2", here)]


def test_a_ring_after_the_engines_loop_closed_is_dropped() -> None:
    loop = asyncio.new_event_loop()
    loop.close()
    rings = Rings()

    OnEngineLoop(rings, loop).call_queued("VC1")  # the call is in the store already

    assert rings.heard == []
