"""Errors of the media layer.

* MediaError        anything the media layer cannot do: bad audio, no codec, no port ...
  + RtpError        bytes that are not a well-formed RTP packet or RFC 4733 payload
"""

from __future__ import annotations


class MediaError(Exception):
    """Base of every error the media layer raises on purpose."""


class RtpError(MediaError):
    """Input that is not a well-formed RTP packet (RFC 3550) or telephone-event (RFC 4733)."""
