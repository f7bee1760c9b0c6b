"""How a call leg ended, as the SIP layer saw it: the facts the status is derived from."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class EndCause(enum.Enum):
    REJECTED = "rejected"  # the far end sent a final non-2xx to our INVITE
    NO_RESPONSE = "no response"  # timer B: nothing at all came back
    TRANSPORT_ERROR = "transport error"  # could not reach the far end (refused, reset)
    RING_TIMEOUT = "ring timeout"  # we stopped ringing (CANCEL) when our ring timeout fired
    CANCELLED = "cancelled"  # we were told to give up before the answer (CANCEL)
    LOCAL_HANGUP = "local hangup"  # we sent BYE after the answer
    REMOTE_HANGUP = "remote hangup"  # the far end sent BYE
    REMOTE_CANCEL = "remote cancel"  # the caller gave up before we answered
    DECLINED = "declined"  # we answered an incoming INVITE with a final non-2xx
    ACK_TIMEOUT = "ack timeout"  # we answered and the ACK never came


class Party(enum.Enum):
    LOCAL = "local"
    REMOTE = "remote"


# Codes the core reports for endings that had no final response from the far end; the
# same convention as pjsip, so "no response" reads as 408 and a transport failure as 503.
NO_RESPONSE_STATUS = (408, "Request Timeout")
TRANSPORT_ERROR_STATUS = (503, "Service Unavailable")


@dataclass(frozen=True, slots=True)
class Outcome:
    """The final facts of one leg.

    ``status`` and ``reason`` are the final response to the INVITE, received (outgoing
    legs) or sent (incoming legs); ``q850_cause`` is the cause of a ``Reason: Q.850``
    header on that response, or on the BYE or CANCEL that ended the call, when there was
    one. Times are on the clock the endpoint was driven with.
    """

    cause: EndCause
    ended_by: Party
    status: int | None
    reason: str
    q850_cause: int | None
    created_at: float
    ringing_at: float | None
    answered_at: float | None
    ended_at: float

    @property
    def answered(self) -> bool:
        return self.answered_at is not None
