"""The sandbox's dial plan: from the dialled number to what the operator does with the call.

Pure rules, no I/O. The defaults (DESIGN.md, "The sandbox operator"): a number whose last
three digits are a final code from 400 to 699 rings briefly and gets that response, with its
standard reason phrase and the Q.850 cause the code maps to; a number ending in 000 rings
until the caller gives up; any other number is answered, then hung up after ``hold_s``.
``sandbox.rules`` from the settings are tried first, in order.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import unquote

from voiceplane.config import SandboxRule, SandboxSettings
from voiceplane.sip.errors import SipParseError
from voiceplane.sip.uri import SipUri


class Action(enum.Enum):
    ANSWER = "answer"  # 180, then 200 with an SDP answer, later our BYE
    RING = "ring"  # 180 and nothing more, until the caller cancels
    REJECT = "reject"  # (180,) then a final 4xx-6xx with a Reason header


@dataclass(frozen=True, slots=True)
class Decision:
    """What the sandbox does with one call.

    ``delay_s`` is how long it rings before the answer or the rejection (0: at once, without
    a 180); ``hold_s`` how long an answered call lasts before the sandbox hangs up (0: the
    sandbox never does). ``rule`` is the index in ``sandbox.rules`` that decided, or ``None``
    for the defaults.
    """

    action: Action
    delay_s: float = 0.0
    hold_s: float = 0.0
    code: int | None = None
    reason: str = ""
    cause: int | None = None
    rule: int | None = None

    @property
    def reason_header(self) -> str | None:
        """The value of the ``Reason`` header a rejection carries (RFC 3326)."""
        return None if self.cause is None else f"Q.850;cause={self.cause}"


# --- numbers -----------------------------------------------------------------------------

_NUMBER = re.compile(r"\+?[0-9]{1,32}")
# RFC 3966 visual separators, which may appear in a telephone-subscriber user part.
_SEPARATORS = str.maketrans("", "", "-.()")
RING_FOREVER_SUFFIX = "000"


def normalize_number(text: str) -> str | None:
    """``text`` as digits with an optional leading ``+``, or ``None`` if it is not a number."""
    candidate = unquote(text).split(";", 1)[0].translate(_SEPARATORS)
    return candidate if _NUMBER.fullmatch(candidate) else None


@lru_cache(maxsize=4096)  # numbers are dialled again and again (agents, bridges, tests)
def dialled_number(request_uri: str) -> str | None:
    """The number a Request-URI dials: its user part (``sip:``/``sips:``) or ``tel:`` number."""
    text = request_uri.strip()
    if text[:4].lower() == "tel:":
        return normalize_number(text[4:])
    try:
        user = SipUri.parse(text).user
    except SipParseError:
        return None
    return normalize_number(user) if user else None


# --- codes and causes --------------------------------------------------------------------

# RFC 3261 section 21 and the RFCs since (IANA "SIP response codes"), 4xx-6xx.
REASON_PHRASES: dict[int, str] = {
    400: "Bad Request", 401: "Unauthorized", 402: "Payment Required", 403: "Forbidden",
    404: "Not Found", 405: "Method Not Allowed", 406: "Not Acceptable",
    407: "Proxy Authentication Required", 408: "Request Timeout", 409: "Conflict",
    410: "Gone", 411: "Length Required", 412: "Conditional Request Failed",
    413: "Request Entity Too Large", 414: "Request-URI Too Long",
    415: "Unsupported Media Type", 416: "Unsupported URI Scheme",
    417: "Unknown Resource-Priority", 420: "Bad Extension", 421: "Extension Required",
    422: "Session Interval Too Small", 423: "Interval Too Brief",
    424: "Bad Location Information", 425: "Bad Alert Message", 428: "Use Identity Header",
    429: "Provide Referrer Identity", 430: "Flow Failed", 433: "Anonymity Disallowed",
    436: "Bad Identity Info", 437: "Unsupported Credential", 438: "Invalid Identity Header",
    439: "First Hop Lacks Outbound Support", 440: "Max-Breadth Exceeded",
    469: "Bad Info Package", 470: "Consent Needed", 480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist", 482: "Loop Detected", 483: "Too Many Hops",
    484: "Address Incomplete", 485: "Ambiguous", 486: "Busy Here",
    487: "Request Terminated", 488: "Not Acceptable Here", 489: "Bad Event",
    491: "Request Pending", 493: "Undecipherable", 494: "Security Agreement Required",
    500: "Server Internal Error", 501: "Not Implemented", 502: "Bad Gateway",
    503: "Service Unavailable", 504: "Server Time-out", 505: "Version Not Supported",
    513: "Message Too Large", 555: "Push Notification Service Not Supported",
    580: "Precondition Failure",
    600: "Busy Everywhere", 603: "Decline", 604: "Does Not Exist Anywhere",
    606: "Not Acceptable", 607: "Unwanted", 608: "Rejected",
}  # fmt: skip
# RFC 3261 section 21: the name of each class, for a code with no phrase of its own.
_CLASS_PHRASES = {4: "Request Failure", 5: "Server Failure", 6: "Global Failure"}

# RFC 3398 section 8.2.6.1: the Q.850 cause a gateway puts in its REL for a SIP response.
_RFC3398_CAUSES: dict[int, int] = {
    400: 41, 401: 21, 402: 21, 403: 21, 404: 1, 405: 63, 406: 79, 407: 21, 408: 102,
    410: 22, 413: 127, 414: 127, 415: 79, 416: 127, 420: 127, 421: 127, 423: 127,
    480: 18, 481: 41, 482: 25, 483: 25, 484: 28, 485: 1, 486: 17,
    500: 41, 501: 79, 502: 38, 503: 41, 504: 102, 505: 127, 513: 127,
    600: 17, 603: 21, 604: 1,
}  # fmt: skip
# Where RFC 3398 gives no number (487; 488 and 606 go "by the Warning header"; codes it
# does not list), the peers doc's chan_pjsip table (section 4.2) fills in, defaults included.
_PJSIP_CAUSES: dict[int, int] = {409: 41, 411: 127, 487: 127, 488: 58, 491: 127, 493: 127, 606: 58}
_INTERWORKING = 127
_CONGESTION = 34


def reason_phrase(code: int) -> str:
    """The standard reason phrase of a final code from 400 to 699."""
    _check_code(code)
    return REASON_PHRASES.get(code) or _CLASS_PHRASES[code // 100]


def q850_cause(code: int) -> int:
    """The Q.850 cause an operator sends with ``code``: RFC 3398, else chan_pjsip's."""
    _check_code(code)
    found = _RFC3398_CAUSES.get(code) or _PJSIP_CAUSES.get(code)
    if found is not None:
        return found
    return _CONGESTION if 500 <= code <= 599 else _INTERWORKING


def _check_code(code: int) -> None:
    if not 400 <= code <= 699:
        raise ValueError(f"a rejection code must be 400-699, not {code}")


# --- the plan ----------------------------------------------------------------------------


def _digits(number: str) -> str:
    return number.removeprefix("+")


def rule_matches(rule: SandboxRule, number: str) -> bool:
    """Whether ``rule`` takes ``number`` (normalized); a leading ``+`` never matters."""
    digits = _digits(number)
    if rule.match is not None and digits != _digits(rule.match):
        return False
    if rule.prefix is not None and not digits.startswith(_digits(rule.prefix)):
        return False
    return rule.suffix is None or digits.endswith(rule.suffix)


class DialPlan:
    """Decides every call from its dialled number: the rules first, then the defaults."""

    def __init__(
        self,
        rules: Sequence[SandboxRule] = (),
        *,
        answer_after_ms: int = 1000,
        reject_after_ms: int = 200,
        hold_s: float = 20.0,
    ) -> None:
        if min(answer_after_ms, reject_after_ms, hold_s) < 0:
            raise ValueError("delays and hold_s must not be negative")
        self.rules = tuple(rules)
        self.answer_after_s = answer_after_ms / 1000
        self.reject_after_s = reject_after_ms / 1000
        self.hold_s = float(hold_s)
        # Decisions are immutable: the default ones are made once, not for every call.
        self._answer = Decision(Action.ANSWER, delay_s=self.answer_after_s, hold_s=self.hold_s)
        self._ring = Decision(Action.RING)
        self._rejections: dict[int, Decision] = {}

    @classmethod
    def from_settings(cls, settings: SandboxSettings) -> DialPlan:
        return cls(
            settings.rules,
            answer_after_ms=settings.answer_after_ms,
            reject_after_ms=settings.reject_after_ms,
            hold_s=settings.hold_s,
        )

    def decide(self, number: str | None) -> Decision:
        """The decision for a normalized number; ``None`` (not a number) is 404."""
        if number is None:
            return self._reject(404)
        for index, rule in enumerate(self.rules):
            if rule_matches(rule, number):
                return self._apply(rule, index)
        last3 = _digits(number)[-3:]
        if len(last3) == 3 and 400 <= int(last3) <= 699:
            code = int(last3)
            found = self._rejections.get(code)
            if found is None:
                found = self._rejections[code] = self._reject(code)
            return found
        if last3 == RING_FOREVER_SUFFIX:
            return self._ring
        return self._answer

    def _reject(self, code: int, *, delay_s: float | None = None, reason: str | None = None,
                cause: int | None = None, rule: int | None = None) -> Decision:  # fmt: skip
        return Decision(
            Action.REJECT,
            delay_s=self.reject_after_s if delay_s is None else delay_s,
            code=code,
            reason=reason or reason_phrase(code),
            cause=q850_cause(code) if cause is None else cause,
            rule=rule,
        )

    def _apply(self, rule: SandboxRule, index: int) -> Decision:
        delay_s = None if rule.after_ms is None else rule.after_ms / 1000
        if rule.action == "reject":
            assert rule.code is not None  # the settings refuse a rejection without a code
            return self._reject(rule.code, delay_s=delay_s, reason=rule.reason,
                                cause=rule.cause, rule=index)  # fmt: skip
        if rule.action == "ring":
            return Decision(Action.RING, rule=index)
        return Decision(
            Action.ANSWER,
            delay_s=self.answer_after_s if delay_s is None else delay_s,
            hold_s=self.hold_s if rule.hold_s is None else rule.hold_s,
            rule=index,
        )
