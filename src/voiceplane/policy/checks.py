"""The pre-dial pipeline: may this call be dialled? Pure: the caller brings the settings,
the blocklist hits and the DND registry.

Order: dialing permissions (the account's and the bridge number's, country, international,
number type, network), then the account's blocklist (only when the account says
``block_outgoing``), then the DND registry (only for a promotional call). The first refusal
wins and names its rule. Every number the call would ring is checked against permissions
and the blocklist (click-to-call agents too: they are dialled through the same trunk); only
the customers (the numbers the call is about: ``to``) are checked against the DND registry.
A call to several numbers in parallel is refused whole if one of them is refused: dialling
the others would quietly change what was asked.

An outgoing call to a blocklisted number is refused as not permitted (the calls layer says
NOTALLOWED with rule ``blocklist``): DESIGN.md keeps BLOCKED for incoming callers.

The result is a :class:`~voiceplane.policy.refusal.Refusal` whose ``kind`` the calls layer
turns into a status word: policy sits below ``calls/`` and does not import it.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Protocol

from .permissions import ACCOUNT_DEFAULT, NUMBER_DEFAULT, DialingRules, check_numbers
from .refusal import RULE_BLOCKLIST, RULE_DND, Refusal, RefusalKind


class DndRegistry(Protocol):
    """The national Do-Not-Disturb registry, as the checks use it."""

    def blocks(self, e164: str, category: int | None) -> bool:
        """Whether a promotional call of ``category`` (None: any) to ``e164`` is refused."""
        ...


@dataclass(frozen=True, slots=True)
class AccountSettings:
    """An account's pre-dial settings (an account that set nothing has these defaults)."""

    rules: DialingRules = ACCOUNT_DEFAULT
    promotional: bool = False  # its calls are promotional unless a call says otherwise
    block_outgoing: bool = False  # its blocklist also refuses outgoing calls
    dnd_category: int | None = None  # the DND preference category of its promotions (1-8)

    def as_dict(self) -> dict[str, object]:
        return self.rules.as_dict() | {
            "promotional": self.promotional,
            "block_outgoing": self.block_outgoing,
            "dnd_category": self.dnd_category,
        }


@dataclass(frozen=True, slots=True)
class CallPolicy:
    """The settings that apply to one call: its account's and its bridge number's."""

    account: AccountSettings = AccountSettings()
    bridge_rules: DialingRules = NUMBER_DEFAULT


@dataclass(frozen=True, slots=True)
class DialRequest:
    """What the checks need to know about a call."""

    dialled: tuple[str, ...]  # every number the call would ring, E.164
    customers: tuple[str, ...]  # the parties the call is about (checked against DND)
    bridge: str | None
    promotional: bool | None = None  # the call's own choice; None: the account's default


def is_promotional(request: DialRequest, policy: CallPolicy) -> bool:
    if request.promotional is not None:
        return request.promotional
    return policy.account.promotional


def pre_dial(
    request: DialRequest,
    policy: CallPolicy,
    *,
    blocklisted: Collection[str] = (),
    dnd: DndRegistry | None = None,
) -> Refusal | None:
    """None if the call may be dialled, else the first refusal (see the module docstring).

    ``blocklisted``: which of ``request.dialled`` are on the account's blocklist (only
    looked at when the account says ``block_outgoing``). ``dnd``: the registry, or None
    when none is loaded (then nobody is on it).
    """
    scopes = [("account", policy.account.rules)]
    if request.bridge is not None:
        scopes.append((f"bridge {request.bridge}", policy.bridge_rules))
    refusal = check_numbers(request.dialled, bridge=request.bridge, scopes=scopes)
    if refusal is not None:
        return refusal
    if policy.account.block_outgoing:
        for number in request.dialled:
            if number in blocklisted:
                return Refusal(
                    RefusalKind.NOT_PERMITTED,
                    RULE_BLOCKLIST,
                    f"{number} is on the account's blocklist, which also applies to "
                    "outgoing calls",
                )
    if dnd is not None and is_promotional(request, policy):
        category = policy.account.dnd_category
        for number in request.customers:
            if dnd.blocks(number, category):
                return Refusal(
                    RefusalKind.DO_NOT_DISTURB,
                    RULE_DND,
                    f"{number} is on the do-not-disturb registry and the call is promotional",
                )
    return None
