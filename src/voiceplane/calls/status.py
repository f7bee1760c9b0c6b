"""The call status vocabulary: the one module that spells status words.

Every finished call carries exactly one of these words (DESIGN.md, "Status derivation"). The
words are the operator statuses of the legacy Kaleyra voice API, themselves Asterisk DIALSTATUS
names plus leg suffixes and platform policy outcomes. Other modules refer to ``Status`` members
and render them with ``spell``; a test fails if any of them writes a status word as a literal.
"""

from __future__ import annotations

import enum


class Dialect(enum.Enum):
    """How status words are written on output."""

    VOICEPLANE = "voiceplane"  # our canonical words (the legacy Kaleyra spelling)
    KALEYRA_IO = "kaleyra.io"  # the names of developers.kaleyra.io "Call Statuses"


class Status(enum.StrEnum):
    # What happened to one dialled leg (Asterisk DIALSTATUS words).
    ANSWER = "ANSWER"
    BUSY = "BUSY"
    NOANSWER = "NOANSWER"
    CONGESTION = "CONGESTION"
    CHANUNAVAIL = "CHANUNAVAIL"
    CANCEL = "CANCEL"
    FAILED = "FAILED"
    # Click-to-call: which leg stopped the call.
    BUSY_LEG1 = "BUSY_LEG1"
    BUSY_LEG2 = "BUSY_LEG2"
    NOANSWER_LEG1 = "NOANSWER_LEG1"
    NOANSWER_LEG2 = "NOANSWER_LEG2"
    FAILED_LEG1 = "FAILED_LEG1"
    FAILED_LEG2 = "FAILED_LEG2"
    # Incoming calls into a flow.
    IVR = "IVR"
    IVR_ANSWER = "IVR-ANSWER"
    MISWIG = "MISWIG"
    # Decided by policy before any SIP is sent.
    BLOCKED = "BLOCKED"
    MAX_USE = "MAX-USE"
    DND = "DND"
    OFF_HOUR = "OFF-HOUR"
    NOTALLOWED = "NOTALLOWED"

    @property
    def description(self) -> str:
        """What the word means to someone reading a call log."""
        return _DESCRIPTIONS[self]

    @property
    def decided_before_dialing(self) -> bool:
        """True for policy outcomes: no INVITE was sent, so the operator said nothing."""
        return self in _PRE_DIAL

    @classmethod
    def parse(cls, text: str) -> Status:
        """Read a status in either dialect (case and surrounding blanks do not matter)."""
        found = _BY_SPELLING.get(text.strip().upper())
        if found is None:
            known = ", ".join(member.value for member in cls)
            raise ValueError(f"unknown call status {text!r}; expected one of: {known}")
        return found


def spell(status: Status, dialect: Dialect = Dialect.VOICEPLANE) -> str:
    """The word for ``status`` in ``dialect``."""
    if dialect is Dialect.KALEYRA_IO:
        return _KALEYRA_IO.get(status, status.value)
    return status.value


_DESCRIPTIONS: dict[Status, str] = {
    Status.ANSWER: "The dialled party picked up (click-to-call: both legs were connected).",
    Status.BUSY: "The dialled party was busy (SIP 486 or 600).",
    Status.NOANSWER: "It rang but nobody picked up before the ring timeout, or the network "
    "reported no answer (SIP 480, 483).",
    Status.CONGESTION: "The operator's network had no capacity for the call (SIP 503 or "
    "another 5xx, or the trunk could not be reached).",
    Status.CHANUNAVAIL: "The operator could not reach the number: unknown, invalid, "
    "rejected, or no reply at all.",
    Status.CANCEL: "Whoever started the call gave up while it was still ringing.",
    Status.FAILED: "The platform itself could not carry the call (configuration, internal "
    "error, media); the operator was not at fault.",
    Status.BUSY_LEG1: "Click-to-call: the first number (the agent) was busy.",
    Status.BUSY_LEG2: "Click-to-call: the first number answered; the second was busy.",
    Status.NOANSWER_LEG1: "Click-to-call: the first number (the agent) did not answer.",
    Status.NOANSWER_LEG2: "Click-to-call: the first number answered; the second did not.",
    Status.FAILED_LEG1: "Click-to-call: the first number could not be connected.",
    Status.FAILED_LEG2: "Click-to-call: the first number answered; the second could not "
    "be connected.",
    Status.IVR: "Incoming: the caller hung up before the flow answered.",
    Status.IVR_ANSWER: "Incoming: the flow answered and the caller heard it.",
    Status.MISWIG: "Incoming: a missed-call number; rung, rejected on purpose and recorded.",
    Status.BLOCKED: "Incoming: the caller is on the account's blocklist; rejected unanswered.",
    Status.MAX_USE: "No channel was free: incoming calls are rejected at once, outgoing calls "
    "get this when their wait in the queue runs out.",
    Status.DND: "Outgoing: the number is on the do-not-disturb registry; not dialled.",
    Status.OFF_HOUR: "Incoming: outside office hours or on a holiday; not answered.",
    Status.NOTALLOWED: "Outgoing: the country or network is not allowed for this account or "
    "bridge; not dialled.",
}

_PRE_DIAL = frozenset(
    {Status.DND, Status.NOTALLOWED, Status.MAX_USE, Status.BLOCKED, Status.OFF_HOUR}
)

# kaleyra.io renames (kaleyra-api-research.md section 7.3). Every other word is written as
# ours: ANSWER, BUSY, NOANSWER, FAILED and CANCEL are the same in both; for CHANUNAVAIL and
# CONGESTION the research only names a lossy "nearest" (NOROUTE / FAILED), which would make
# parsing ambiguous; IVR, BLOCKED, DND, OFF-HOUR and NOTALLOWED have no documented kaleyra.io
# name (NOROUTE means "no route", not "not permitted").
_KALEYRA_IO: dict[Status, str] = {
    Status.BUSY_LEG1: "BUSY_CHANNEL1",
    Status.BUSY_LEG2: "BUSY_CHANNEL2",
    Status.NOANSWER_LEG1: "NOANSWER_CHANNEL1",
    Status.NOANSWER_LEG2: "NOANSWER_CHANNEL2",
    Status.FAILED_LEG1: "FAILED_CHANNEL1",
    Status.FAILED_LEG2: "FAILED_CHANNEL2",
    Status.MAX_USE: "MAXUSE",
    Status.MISWIG: "MISS_CALL",
    Status.IVR_ANSWER: "FLOW_ANSWER",
}

_BY_SPELLING: dict[str, Status] = {
    **{member.value: member for member in Status},
    **{word: member for member, word in _KALEYRA_IO.items()},
}
# Parsing is only safe while no word means two statuses in the two dialects together.
assert len(_BY_SPELLING) == len(Status) + len(_KALEYRA_IO), "a status spelling is reused"
