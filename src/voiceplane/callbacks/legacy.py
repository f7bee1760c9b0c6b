"""Legacy callbacks: a ``callback`` URL with ``{placeholders}``, requested with GET.

The Kaleyra voice API lets a client pass ``callback=https://crm.example/cb?from={caller}&st=
{status}``; when the call ends, each ``{name}`` is replaced by its value, URL-encoded, and
the URL is fetched with GET (kaleyra-api-research.md, section 8.1). A placeholder may also
arrive percent-encoded (``%7Bcaller%7D``); names are case-insensitive.

The values come from the call record (``voiceplane.store.repository.call_record``). Each
mapping, decided here because the research leaves most of them open:

============  ==============================================================================
id            the call id
caller        ``from`` (the agent of a click-to-call, the caller of an incoming call); for an
              outbound call, which has no ``from``, the ``bridge`` it is placed from
receiver      ``to``
callto        ``to``: the number called (for an incoming call, the DID)
callerid      ``bridge``: the caller ID presented
status        the call's status, in the account's dialect
obdstatus     the same (the OBD name for it)
status1       the status of the latest try of leg 1 (agent / the first party)
status2       the status of the latest try of leg 2 (customer); empty for one-leg calls
duration      seconds from start to end (integer)
billsec       seconds from answer to end (integer)
starttime     the call's start, integer seconds since the epoch (what G1 parses)
endtime       the call's end, the same way
answertime    the call's answer, the same way
calltime      the call's start as ``dd/mm/YYYY hh:mm AM`` in UTC (the masking docs' format)
recordpath    the recording URL (``recording`` in the record); empty until recordings exist
keypress      the digits the caller keyed (``keypress`` in the record); empty without a flow
custom        ``custom`` as given on the request
service, from, to, bridge, reason   the record's fields of those names
============  ==============================================================================

A value that is missing (None) becomes the empty string. Unknown placeholders are refused
when the URL is accepted (:func:`check_template`, for the API to call), and should one reach
:func:`render` anyway it is left as it was (its braces percent-encoded, so the URL stays
valid): a late failure would cost the user the callback itself.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Final
from urllib.parse import quote, urlsplit

from voiceplane.calls.status import Dialect, Status, spell

PLACEHOLDERS: Final = frozenset(
    {
        "id", "caller", "receiver", "callto", "callerid", "status", "status1", "status2",
        "obdstatus", "duration", "billsec", "starttime", "endtime", "answertime", "calltime",
        "recordpath", "keypress", "custom", "service", "from", "to", "bridge", "reason",
    }
)  # fmt: skip
CALLTIME_FORMAT: Final = "%d/%m/%Y %I:%M %p"

_PLACEHOLDER: Final = re.compile(r"\{([A-Za-z0-9_]+)\}|%7[Bb]([A-Za-z0-9_]+)%7[Dd]")


def placeholders(template: str) -> list[str]:
    """The placeholder names in ``template``, lower-cased, in order of appearance."""
    return [(match[1] or match[2]).lower() for match in _PLACEHOLDER.finditer(template)]


def has_placeholders(template: str) -> bool:
    """True when ``template`` is a legacy (GET) callback URL."""
    return _PLACEHOLDER.search(template) is not None


def check_template(template: str) -> None:
    """Refuse a callback URL that is not http(s) or names a placeholder we do not fill."""
    parts = urlsplit(template)
    if parts.scheme.lower() not in {"http", "https"} or not parts.netloc:
        raise ValueError(f"a callback URL must be an http or https URL, got {template!r}")
    unknown = sorted(set(placeholders(template)) - PLACEHOLDERS)
    if unknown:
        known = ", ".join(sorted(PLACEHOLDERS))
        raise ValueError(
            f"unknown callback placeholder(s) {', '.join(unknown)}; known ones: {known}"
        )


def render(template: str, values: Mapping[str, str]) -> str:
    """``template`` with each known placeholder replaced by its value, percent-encoded.

    Every character but the unreserved ones (RFC 3986) is encoded, so a value is safe in a
    path segment and in a query, and decodes back exactly.
    """

    def substitute(match: re.Match[str]) -> str:
        name = (match[1] or match[2]).lower()
        value = values.get(name)
        if value is None:
            return "%7B" + (match[1] or match[2]) + "%7D"
        return quote(value, safe="")

    return _PLACEHOLDER.sub(substitute, template)


def _text(value: object) -> str:
    return "" if value is None else str(value)


def _moment(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    return datetime.fromisoformat(value).astimezone(UTC)


def _epoch(value: object) -> str:
    moment = _moment(value)
    return "" if moment is None else str(int(moment.timestamp()))


def _status(value: object, dialect: Dialect) -> str:
    if not isinstance(value, str) or not value:
        return ""
    return spell(Status.parse(value), dialect)


def _leg_status(record: Mapping[str, object], leg: int, dialect: Dialect) -> str:
    legs = record.get("legs")
    if not isinstance(legs, list):
        return ""
    tries = [entry for entry in legs if isinstance(entry, Mapping) and entry.get("leg") == leg]
    return _status(tries[-1].get("status"), dialect) if tries else ""


def values(record: Mapping[str, object], dialect: Dialect = Dialect.VOICEPLANE) -> dict[str, str]:
    """The value of every placeholder for a call record (see the module docstring)."""
    status = _status(record.get("status"), dialect)
    start = _moment(record.get("start_time"))
    return {
        "id": _text(record.get("id")),
        "caller": _text(record.get("from") or record.get("bridge")),
        "receiver": _text(record.get("to")),
        "callto": _text(record.get("to")),
        "callerid": _text(record.get("bridge")),
        "status": status,
        "obdstatus": status,
        "status1": _leg_status(record, 1, dialect),
        "status2": _leg_status(record, 2, dialect),
        "duration": _text(record.get("duration")),
        "billsec": _text(record.get("billsec")),
        "starttime": _epoch(record.get("start_time")),
        "endtime": _epoch(record.get("end_time")),
        "answertime": _epoch(record.get("answer_time")),
        "calltime": "" if start is None else start.strftime(CALLTIME_FORMAT),
        "recordpath": _text(record.get("recording")),
        "keypress": _text(record.get("keypress")),
        "custom": _text(record.get("custom")),
        "service": _text(record.get("service")),
        "from": _text(record.get("from")),
        "to": _text(record.get("to")),
        "bridge": _text(record.get("bridge")),
        "reason": _text(record.get("reason")),
    }
