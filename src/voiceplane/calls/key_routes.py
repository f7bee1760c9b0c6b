"""Where a key sent by SIP INFO goes: the media session of the flow on that SIP dialog.

Phones and operators send keys either in the RTP stream (RFC 4733, which the media
session hears itself) or as SIP INFO requests on the call's dialog, which reach the SIP
service, not the media. A flow running on a dialog (an incoming call, or an outgoing leg
whose target is a flow) registers its media session here under the dialog's Call-ID for as
long as it runs; the SIP service hands each INFO key to :meth:`KeyRoutes.press`, and the key
joins the session's RFC 4733 ones, for the flow's next gather or menu.

One instance per platform, shared by the incoming side and the engine, like the channel
counter.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from voiceplane.media.backend import MediaSession

__all__ = ["KeyRoutes"]


class KeyRoutes:
    """The media session of each SIP dialog a flow runs on, by the dialog's Call-ID."""

    def __init__(self) -> None:
        self._sessions: dict[str, MediaSession] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    @contextmanager
    def route(self, sip_call_id: str, session: MediaSession) -> Iterator[None]:
        """Keys sent by SIP INFO on ``sip_call_id`` go to ``session`` inside this block."""
        self._sessions[sip_call_id] = session
        try:
            yield
        finally:
            if self._sessions.get(sip_call_id) is session:
                del self._sessions[sip_call_id]

    def press(self, sip_call_id: str, key: str) -> bool:
        """Hand ``key`` to the flow on ``sip_call_id``; False when no flow runs there."""
        session = self._sessions.get(sip_call_id)
        if session is None:
            return False
        session.dtmf().put_nowait(key)
        return True
