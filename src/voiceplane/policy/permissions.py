"""Dialing permissions: which countries, number types and networks an account or a bridge
number may call, and whether it may call abroad.

Pure functions over frozen settings (:class:`DialingRules`) and what phonenumbers' data
says about a number (:class:`NumberFacts`). The account's rules and its bridge number's
rules both apply: a call is dialled only if both allow it (the stricter wins).

- Country: the callee's ISO 3166 region (``IN``, ``US``, ``GG``...). A number phonenumbers
  cannot place in a region gets its calling code's main region (+44 -> ``GB``).
- International: the callee's region differs from the bridge number's (a +1 US bridge
  calling Canada is international); if either region is unknown, their calling codes are
  compared.
- Number type: phonenumbers' ``number_type`` in lower case (``mobile``, ``fixed_line``,
  ``toll_free``, ``premium_rate``, ``unknown``...). A number it cannot tell apart
  (``fixed_line_or_mobile``, the whole of the US) passes if ``fixed_line`` or ``mobile`` is
  allowed. An account with no settings may call every type except ``premium_rate``: toll
  fraud dials premium numbers, and a business rarely needs to.
- Network: the carrier phonenumbers names for the number's range (``Airtel``, ``SFR``),
  compared without regard to case. Where numbers can be ported this is the network the
  range was given to, not always today's. A list of allowed networks refuses numbers with
  no known network; a list of refused ones refuses only those named.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

import phonenumbers
from phonenumbers import PhoneNumberType, carrier

from .refusal import (
    RULE_COUNTRY,
    RULE_INTERNATIONAL,
    RULE_NETWORK,
    RULE_NUMBER_TYPE,
    Refusal,
    RefusalKind,
)

NUMBER_TYPES: Final[dict[str, int]] = {
    name.lower(): value
    for name, value in vars(PhoneNumberType).items()
    if name.isupper() and isinstance(value, int)
}
_TYPE_NAMES: Final = {value: name for name, value in NUMBER_TYPES.items()}
EITHER_TYPE: Final = "fixed_line_or_mobile"
MAX_NETWORK_NAME: Final = 100
FACTS_CACHE: Final = 65_536  # numbers whose facts are kept (parsing costs ~20 us)


class RuleError(ValueError):
    """A setting that cannot be used; ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True, slots=True)
class DialingRules:
    """What one account or one bridge number may dial. ``None`` lists mean "any"."""

    countries: frozenset[str] | None = None  # allowed ISO regions, upper case
    international: bool = True
    number_types: frozenset[str] | None = None  # allowed types (NUMBER_TYPES keys)
    networks: frozenset[str] | None = None  # allowed networks, case-folded
    blocked_networks: frozenset[str] = frozenset()  # refused networks, case-folded

    @classmethod
    def build(
        cls,
        *,
        countries: Iterable[str] | None = None,
        international: bool = True,
        number_types: Iterable[str] | None = None,
        networks: Iterable[str] | None = None,
        blocked_networks: Iterable[str] | None = None,
    ) -> DialingRules:
        """Rules from user input, checked and normalised; :class:`RuleError` names a bad one.

        A list may also be given as one comma-separated string (forms, the command line).
        """
        return cls(
            countries=None if countries is None else _regions(_items(countries)),
            international=international,
            number_types=None if number_types is None else _types(_items(number_types)),
            networks=None if networks is None else _networks(_items(networks), "networks"),
            blocked_networks=_networks(_items(blocked_networks or ()), "blocked_networks"),
        )

    def as_dict(self) -> dict[str, object]:
        """The rules as JSON-ready lists (sorted), ``None`` for "any"."""
        return {
            "countries": _sorted(self.countries),
            "international": self.international,
            "number_types": _sorted(self.number_types),
            "networks": _sorted(self.networks),
            "blocked_networks": sorted(self.blocked_networks),
        }


# An account with no settings: anything but premium-rate numbers (see the module docstring).
ACCOUNT_DEFAULT: Final = DialingRules(number_types=frozenset(NUMBER_TYPES) - {"premium_rate"})
# A number with no settings adds no restriction to its account's.
NUMBER_DEFAULT: Final = DialingRules()


@dataclass(frozen=True, slots=True)
class NumberFacts:
    """What phonenumbers' data says about a number."""

    e164: str
    region: str | None  # ISO 3166 region, None if unknown
    country_code: int  # 0 if the number could not be read
    number_type: str  # a NUMBER_TYPES key
    network: str  # carrier name, "" if unknown


@functools.lru_cache(maxsize=FACTS_CACHE)
def facts_of(e164: str) -> NumberFacts:
    """The facts of an E.164 number; a number that cannot be read has none (no exception:
    the API validated it, and an unknown number is for the rules to judge)."""
    try:
        number = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return NumberFacts(e164, None, 0, "unknown", "")
    region = phonenumbers.region_code_for_number(number)
    if region in (None, "ZZ", "001"):
        region = phonenumbers.region_code_for_country_code(number.country_code or 0)
    valid = phonenumbers.is_valid_number(number)
    network = carrier.name_for_valid_number(number, "en") if valid else ""
    kind = _TYPE_NAMES.get(phonenumbers.number_type(number), "unknown")
    return NumberFacts(
        e164=e164,
        region=None if region in (None, "ZZ", "001") else region,
        country_code=number.country_code or 0,
        number_type=kind,
        network=network,
    )


def is_international(callee: NumberFacts, bridge: NumberFacts) -> bool:
    """Whether calling ``callee`` from ``bridge`` crosses a border (module docstring)."""
    if callee.region is not None and bridge.region is not None:
        return callee.region != bridge.region
    return callee.country_code != bridge.country_code


def type_allowed(number_type: str, allowed: frozenset[str]) -> bool:
    if number_type in allowed:
        return True
    return number_type == EITHER_TYPE and bool(allowed & {"fixed_line", "mobile"})


# --- the checks --------------------------------------------------------------------------------


def _country(rules: DialingRules, callee: NumberFacts, bridge: NumberFacts | None) -> str | None:
    if rules.countries is None or callee.region in rules.countries:
        return None
    where = callee.region or "an unknown country"
    return f"{callee.e164} is in {where}; allowed: {', '.join(sorted(rules.countries)) or 'none'}"


def _international(
    rules: DialingRules, callee: NumberFacts, bridge: NumberFacts | None
) -> str | None:
    if rules.international or bridge is None or not is_international(callee, bridge):
        return None
    return (
        f"{callee.e164} ({callee.region or '?'}) is international from the bridge "
        f"{bridge.e164} ({bridge.region or '?'}) and international dialing is off"
    )


def _number_type(
    rules: DialingRules, callee: NumberFacts, bridge: NumberFacts | None
) -> str | None:
    if rules.number_types is None or type_allowed(callee.number_type, rules.number_types):
        return None
    allowed = ", ".join(sorted(rules.number_types)) or "none"
    return f"{callee.e164} is a {callee.number_type} number; allowed types: {allowed}"


def _network(rules: DialingRules, callee: NumberFacts, bridge: NumberFacts | None) -> str | None:
    name = callee.network.casefold()
    shown = callee.network or "an unknown network"
    if name and name in rules.blocked_networks:
        return f"{callee.e164} is on {shown}, a refused network"
    if rules.networks is not None and name not in rules.networks:
        return f"{callee.e164} is on {shown}, not an allowed network"
    return None


_CHECKS: Final = (
    (RULE_COUNTRY, _country),
    (RULE_INTERNATIONAL, _international),
    (RULE_NUMBER_TYPE, _number_type),
    (RULE_NETWORK, _network),
)


def check_number(
    callee: str,
    *,
    bridge: str | None,
    scopes: Sequence[tuple[str, DialingRules]],
) -> Refusal | None:
    """The first rule that refuses dialing ``callee`` from ``bridge``, else None.

    ``scopes`` are the rules that apply with a name for each (``("account", rules)``,
    ``("bridge +91...", rules)``); rules are tried in the order country, international,
    number type, network, each against every scope, so the refusal names the first rule
    broken whichever scope broke it.
    """
    facts = facts_of(callee)
    bridge_facts = None if bridge is None else facts_of(bridge)
    for rule, check in _CHECKS:
        for scope, rules in scopes:
            why = check(rules, facts, bridge_facts)
            if why is not None:
                return Refusal(RefusalKind.NOT_PERMITTED, rule, f"{scope}: {why}")
    return None


def check_numbers(
    callees: Iterable[str],
    *,
    bridge: str | None,
    scopes: Sequence[tuple[str, DialingRules]],
) -> Refusal | None:
    """:func:`check_number` for each number to be dialled; the first refusal."""
    for callee in callees:
        refusal = check_number(callee, bridge=bridge, scopes=scopes)
        if refusal is not None:
            return refusal
    return None


# --- reading settings ----------------------------------------------------------------------


def _items(values: Iterable[str]) -> list[str]:
    if isinstance(values, str):
        return [part for part in (piece.strip() for piece in values.split(",")) if part]
    return list(values)


def _sorted(values: frozenset[str] | None) -> list[str] | None:
    return None if values is None else sorted(values)


def _regions(values: Iterable[str]) -> frozenset[str]:
    found = set()
    for value in values:
        region = str(value).strip().upper()
        if region not in phonenumbers.SUPPORTED_REGIONS:
            raise RuleError(
                "countries", f"{value!r} is not an ISO 3166 country code phonenumbers knows"
            )
        found.add(region)
    return frozenset(found)


def _types(values: Iterable[str]) -> frozenset[str]:
    found = set()
    for value in values:
        name = str(value).strip().lower()
        if name not in NUMBER_TYPES:
            known = ", ".join(sorted(NUMBER_TYPES))
            raise RuleError("number_types", f"unknown number type {value!r}; known: {known}")
        found.add(name)
    return frozenset(found)


def _networks(values: Iterable[str], field: str) -> frozenset[str]:
    found = set()
    for value in values:
        name = str(value).strip()
        if not name or len(name) > MAX_NETWORK_NAME:
            raise RuleError(field, f"a network name must be 1 to {MAX_NETWORK_NAME} characters")
        found.add(name.casefold())
    return frozenset(found)
