"""What changed between two call records (the contract's JSON), as lines for a person.

``voiceplane call`` polls the record and prints these: the call's state, and each leg's
progress (dialing, ringing, answered, ended with its status and SIP outcome). Pure functions
over the JSON, so the wording is tested without a server.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

Record = Mapping[str, Any]


def leg_phase(leg: Record) -> str:
    """How far a leg got, from the times it has."""
    if leg.get("end_time"):
        return "ended"
    if leg.get("answer_time"):
        return "answered"
    if leg.get("ring_time"):
        return "ringing"
    return "dialing"


def changes(before: Record | None, after: Record) -> list[str]:
    """The lines that tell what ``after`` shows and ``before`` did not (None: everything)."""
    lines: list[str] = []
    old_legs: Sequence[Record] = before.get("legs", []) if before is not None else []
    for index, leg in enumerate(after.get("legs", [])):
        old = old_legs[index] if index < len(old_legs) else None
        if old is None or leg_phase(old) != leg_phase(leg):
            lines.append(describe_leg(leg))
    # The call's state last: a leg's end comes before the call's completion.
    if before is None or before.get("state") != after.get("state"):
        lines.append(f"call {after.get('state')}")
    return lines


def describe_leg(leg: Record) -> str:
    """``leg 2 +919812345678: ended NOANSWER (SIP 480 Temporarily Unavailable, Q.850 18)``."""
    phase = leg_phase(leg)
    text = f"leg {leg.get('leg')} {leg.get('number')}: {phase}"
    if phase != "ended":
        return text
    details = []
    if leg.get("sip_code") is not None:
        details.append(f"SIP {leg['sip_code']} {leg.get('sip_reason') or ''}".rstrip())
    if leg.get("q850_cause") is not None:
        details.append(f"Q.850 {leg['q850_cause']}")
    if leg.get("hangup_by"):
        details.append(f"hung up by {leg['hangup_by']}")
    text += f" {leg.get('status') or ''}".rstrip()
    return f"{text} ({', '.join(details)})" if details else text


def summary(record: Record) -> str:
    """The last line: ``status ANSWER after 25 s (20 s talking)``, and the reason."""
    return f"status {record.get('status') or '-'} {ending(record)}"


def ending(record: Record) -> str:
    """``after 25 s (20 s talking)``, and ``; <reason>`` when the record has one."""
    text = f"after {record.get('duration', 0)} s ({record.get('billsec', 0)} s talking)"
    if record.get("reason"):
        text += f"; {record['reason']}"
    return text
