"""Errors of the SIP core.

The hierarchy, so a caller can catch exactly what it means:

* SipError
  + SipParseError        bytes that are not a SIP message; carries the response to answer with
  + LocalProtocolError   we asked the core to do something the protocol forbids now
"""

from __future__ import annotations


class SipError(Exception):
    """Base of every error the SIP core raises."""


class SipParseError(SipError):
    """Input that is not a well-formed SIP message (or header, URI, SDP, challenge).

    ``status_hint`` is the response a server should answer a broken request with, when the
    request was readable enough to be answered at all (RFC 3261 section 21.4.1).
    """

    def __init__(self, reason: str, *, status_hint: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status_hint = status_hint


class LocalProtocolError(SipError):
    """The core was asked for something that is not legal in the current state."""
