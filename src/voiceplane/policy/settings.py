"""Pre-dial settings in the store: an account's (``account_policies``) and a number's
(``number_policies``), read for a call and changed by the admin API and CLI.

A missing row means the defaults (:data:`~voiceplane.policy.permissions.ACCOUNT_DEFAULT`,
:data:`~voiceplane.policy.permissions.NUMBER_DEFAULT`). A change is partial: the fields it
names are set, the others keep their value; a list set to null (or ``"any"``) means any.
Bad input raises :class:`~voiceplane.policy.permissions.RuleError` naming the field, before
anything is written.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from voiceplane.store.models import AccountPolicy, Number, NumberPolicy

from .checks import AccountSettings, CallPolicy
from .permissions import NUMBER_DEFAULT, DialingRules, RuleError

RULE_FIELDS: Final = ("countries", "international", "number_types", "networks", "blocked_networks")
ACCOUNT_FIELDS: Final = (*RULE_FIELDS, "promotional", "block_outgoing", "dnd_category")
DND_CATEGORIES: Final = range(1, 9)  # TRAI's preference categories
_LISTS: Final = ("countries", "number_types", "networks", "blocked_networks")
_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off"})


# --- reading -------------------------------------------------------------------------------


def _rules_of(row: AccountPolicy | NumberPolicy) -> DialingRules:
    return DialingRules(
        countries=None if row.countries is None else frozenset(row.countries),
        international=row.international,
        number_types=None if row.number_types is None else frozenset(row.number_types),
        networks=None if row.networks is None else frozenset(row.networks),
        blocked_networks=frozenset(row.blocked_networks or ()),
    )


def account_settings(session: Session, *, account_id: int) -> AccountSettings:
    row = session.get(AccountPolicy, account_id)
    if row is None:
        return AccountSettings()
    return AccountSettings(
        rules=_rules_of(row),
        promotional=row.promotional,
        block_outgoing=row.block_outgoing,
        dnd_category=row.dnd_category,
    )


def number_rules(session: Session, *, number_id: int) -> DialingRules:
    row = session.get(NumberPolicy, number_id)
    return NUMBER_DEFAULT if row is None else _rules_of(row)


def call_policy(session: Session, *, account_id: int, bridge: str | None) -> CallPolicy:
    """The settings for a call of ``account_id`` through ``bridge`` (the engine's read)."""
    bridge_rules = NUMBER_DEFAULT
    if bridge is not None:
        row = session.execute(
            select(NumberPolicy)
            .join(Number, Number.id == NumberPolicy.number_id)
            .where(Number.e164 == bridge, Number.account_id == account_id)
        ).scalar_one_or_none()
        if row is not None:
            bridge_rules = _rules_of(row)
    return CallPolicy(account_settings(session, account_id=account_id), bridge_rules)


# --- changing ------------------------------------------------------------------------------


def changed_rules(current: DialingRules, changes: Mapping[str, Any]) -> DialingRules:
    """``current`` with ``changes`` applied (only rule fields; see the module docstring)."""
    _only(changes, RULE_FIELDS)
    values: dict[str, Any] = {
        "countries": current.countries,
        "international": current.international,
        "number_types": current.number_types,
        "networks": current.networks,
        "blocked_networks": current.blocked_networks,
    }
    for name, value in changes.items():
        if name == "international":
            values[name] = _flag(name, value)
        else:
            values[name] = _list(name, value)
    return DialingRules.build(
        countries=values["countries"],
        international=values["international"],
        number_types=values["number_types"],
        networks=values["networks"],
        blocked_networks=values["blocked_networks"],
    )


def changed_account(current: AccountSettings, changes: Mapping[str, Any]) -> AccountSettings:
    """``current`` with ``changes`` applied (rule fields and the account's own)."""
    _only(changes, ACCOUNT_FIELDS)
    rules = changed_rules(
        current.rules, {name: value for name, value in changes.items() if name in RULE_FIELDS}
    )
    settings = replace(current, rules=rules)
    if "promotional" in changes:
        settings = replace(settings, promotional=_flag("promotional", changes["promotional"]))
    if "block_outgoing" in changes:
        flag = _flag("block_outgoing", changes["block_outgoing"])
        settings = replace(settings, block_outgoing=flag)
    if "dnd_category" in changes:
        settings = replace(settings, dnd_category=_category(changes["dnd_category"]))
    return settings


def save_account(session: Session, *, account_id: int, settings: AccountSettings) -> None:
    row = session.get(AccountPolicy, account_id)
    if row is None:
        row = AccountPolicy(account_id=account_id)
        session.add(row)
    _store_rules(row, settings.rules)
    row.promotional = settings.promotional
    row.block_outgoing = settings.block_outgoing
    row.dnd_category = settings.dnd_category
    session.flush()


def save_number(session: Session, *, number_id: int, rules: DialingRules) -> None:
    row = session.get(NumberPolicy, number_id)
    if row is None:
        row = NumberPolicy(number_id=number_id)
        session.add(row)
    _store_rules(row, rules)
    session.flush()


def _store_rules(row: AccountPolicy | NumberPolicy, rules: DialingRules) -> None:
    shown = rules.as_dict()
    row.countries = shown["countries"]  # type: ignore[assignment]
    row.international = rules.international
    row.number_types = shown["number_types"]  # type: ignore[assignment]
    row.networks = shown["networks"]  # type: ignore[assignment]
    row.blocked_networks = shown["blocked_networks"]  # type: ignore[assignment]


# --- reading user input --------------------------------------------------------------------


def _only(changes: Mapping[str, Any], known: tuple[str, ...]) -> None:
    for name in changes:
        if name not in known:
            raise RuleError(name, f"unknown setting {name!r}; known: {', '.join(known)}")


def _flag(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise RuleError(name, f"{name} must be true or false, got {value!r}")


def _list(name: str, value: Any) -> list[str] | str | None:
    """A list setting: a list of strings, a comma-separated string, null/"any" for any,
    "none" for an empty list. Empty text is refused: it would read as "nothing allowed"
    where a form user most likely meant to clear the setting."""
    if value is None or (isinstance(value, str) and value.strip().lower() == "any"):
        return None if name != "blocked_networks" else []
    if isinstance(value, str) and value.strip().lower() == "none":
        return []
    if isinstance(value, str) and not value.strip():
        raise RuleError(name, f"{name} is empty: write any (no restriction) or none")
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return value
    raise RuleError(name, f"{name} must be a list of strings, a comma-separated string or null")


def _category(value: Any) -> int | None:
    """A DND preference category (TRAI: 1 banking ... 8 food); empty or null: none."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or value not in DND_CATEGORIES:
        raise RuleError(
            "dnd_category",
            f"dnd_category must be a preference category from {DND_CATEGORIES.start} to "
            f"{DND_CATEGORIES.stop - 1}, or null",
        )
    return value

