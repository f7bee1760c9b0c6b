"""How the API tells the call engine that there is work, without touching SIP.

The API stores every command in the database first (a queued call, a cancel request) and
only then calls these hooks, so a command is never lost: an engine that was not told (it
runs in another process, or it was restarting) finds the work by polling the store.
"""

from __future__ import annotations

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
