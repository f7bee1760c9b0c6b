"""What a pre-dial check says when a call must not be dialled.

The policy layer sits below ``calls/`` (DESIGN.md, Layers), so it does not name call
statuses: it says what kind of refusal it is (:class:`RefusalKind`) and the calls layer
turns that into the status word (``voiceplane.calls.predial``). The ``rule`` is what the
call record shows as ``rule`` (the ``decided_by_rule`` column).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

# The rules, as the call record names them.
RULE_COUNTRY: Final = "permissions.country"
RULE_INTERNATIONAL: Final = "permissions.international"
RULE_NUMBER_TYPE: Final = "permissions.number_type"
RULE_NETWORK: Final = "permissions.network"
RULE_BLOCKLIST: Final = "blocklist"
RULE_DND: Final = "dnd"


class RefusalKind(enum.Enum):
    """Why a call is not dialled, before it becomes a status word in ``calls/``."""

    NOT_PERMITTED = "not-permitted"  # the account or bridge may not dial it; or blocklisted
    DO_NOT_DISTURB = "do-not-disturb"  # a promotional call to a number on the DND registry


@dataclass(frozen=True, slots=True)
class Refusal:
    """A call that must not be dialled: why (``kind``), which ``rule``, and in words."""

    kind: RefusalKind
    rule: str
    explanation: str
