"""A call's ``target`` (or click-to-call's ``to``) that names a flow: ``flow:<id>`` / ``ivr:<id>``.

The API stores the target as ``flow:<id>`` whichever prefix it was given; the engine runs
that flow's live version once the leg answers (:mod:`voiceplane.calls.leg_flow`).
"""

from __future__ import annotations

import re
from typing import Final

PREFIXES: Final = ("flow:", "ivr:")
STORED_PREFIX: Final = "flow:"
_FLOW_ID: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")


class FlowTargetError(ValueError):
    """A ``flow:`` / ``ivr:`` target whose id cannot be a flow id."""


def flow_id_of(target: str | None) -> str | None:
    """The flow id ``target`` names, or None if it names no flow (text, a file).

    Raises :class:`FlowTargetError` for a flow prefix followed by no usable id.
    """
    if target is None:
        return None
    text = target.strip()
    for prefix in PREFIXES:
        if text[: len(prefix)].lower() == prefix:
            flow_id = text[len(prefix) :].strip()
            if not _FLOW_ID.fullmatch(flow_id):
                raise FlowTargetError(f"{text!r} does not name a flow id after {prefix!r}")
            return flow_id
    return None


def stored(flow_id: str) -> str:
    """The target as stored for a flow."""
    return f"{STORED_PREFIX}{flow_id}"
