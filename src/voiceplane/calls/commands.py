"""How the API tells the call engine that there is work, without touching SIP.

The API stores every command in the database first (a queued call, a cancel request) and
only then calls these hooks, so a command is never lost: an engine that was not told (it
runs in another process, or it was restarting) finds the work by polling the store.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol


class CallCommands(Protocol):
    """The engine's doorbell, rung by the API after its transaction committed."""

    def call_queued(self, call_id: str) -> None:
        """A call was stored in state ``queued`` (perhaps scheduled for later)."""

    def cancel_requested(self, call_id: str) -> None:
        """``cancel_requested_at`` was set on a call that has not completed."""


class NoEngine:
    """For an API process with no engine beside it: the engines poll the store instead."""

    def call_queued(self, call_id: str) -> None:
        return None

    def cancel_requested(self, call_id: str) -> None:
        return None


@dataclass(frozen=True)
class OnEngineLoop:
    """``engine``'s doorbell for a caller in another thread (serve's HTTP thread): each ring
    is handed to ``loop``, the engine's event loop, whose objects only its thread may touch.

    A ring that cannot be handed over (the loop has closed during shutdown) is dropped: the
    command is in the store already, and the engine finds it there when it starts again.
    """

    engine: CallCommands
    loop: asyncio.AbstractEventLoop

    def call_queued(self, call_id: str) -> None:
        self._hand_over(self.engine.call_queued, call_id)

    def cancel_requested(self, call_id: str) -> None:
        self._hand_over(self.engine.cancel_requested, call_id)

    def _hand_over(self, ring: Callable[[str], None], call_id: str) -> None:
        try:
            self.loop.call_soon_threadsafe(ring, call_id)
        except RuntimeError:  # the loop is closed
            return
