"""The pre-dial pipeline: permissions, then the outgoing blocklist, then DND for promotional
calls; the first refusal names its rule."""

from __future__ import annotations

from dataclasses import dataclass, field

from voiceplane.policy.checks import (
    AccountSettings,
    CallPolicy,
    DialRequest,
    DndRegistry,
    is_promotional,
    pre_dial,
)
from voiceplane.policy.permissions import DialingRules
from voiceplane.policy.refusal import (
    RULE_BLOCKLIST,
    RULE_COUNTRY,
    RULE_DND,
    RULE_NETWORK,
    RefusalKind,
)

BRIDGE = "+918047100000"
AGENT = "+919812345678"  # Idea
CUSTOMER = "+919876500111"  # Airtel
ABROAD = "+14155550123"


@dataclass
class FakeDnd:
    numbers: set[str]
    asked: list[tuple[str, int | None]] = field(default_factory=list)

    def blocks(self, e164: str, category: int | None) -> bool:
        self.asked.append((e164, category))
        return e164 in self.numbers


def request(
    *customers: str, agents: tuple[str, ...] = (), promotional: bool | None = None
) -> DialRequest:
    return DialRequest(
        dialled=(*agents, *customers), customers=customers, bridge=BRIDGE, promotional=promotional
    )


def policy(**account: object) -> CallPolicy:
    return CallPolicy(account=AccountSettings(**account))  # type: ignore[arg-type]


def test_the_fake_is_a_registry() -> None:
    registry: DndRegistry = FakeDnd(set())
    assert not registry.blocks(CUSTOMER, None)


def test_a_call_nothing_refuses_goes_ahead() -> None:
    dnd = FakeDnd({ABROAD})
    assert pre_dial(request(CUSTOMER, promotional=True), policy(), dnd=dnd) is None
    assert dnd.asked == [(CUSTOMER, None)]


def test_dnd_only_for_promotional_calls() -> None:
    dnd = FakeDnd({CUSTOMER})
    assert pre_dial(request(CUSTOMER), policy(), dnd=dnd) is None  # transactional by default
    assert dnd.asked == []  # not even asked
    refusal = pre_dial(request(CUSTOMER, promotional=True), policy(), dnd=dnd)
    assert refusal is not None
    assert (refusal.kind, refusal.rule) == (RefusalKind.DO_NOT_DISTURB, RULE_DND)
    assert CUSTOMER in refusal.explanation
    # The account's default, and a call that says otherwise.
    assert pre_dial(request(CUSTOMER), policy(promotional=True), dnd=dnd) is not None
    quiet = request(CUSTOMER, promotional=False)
    assert pre_dial(quiet, policy(promotional=True), dnd=dnd) is None
    assert is_promotional(quiet, policy(promotional=True)) is False


def test_dnd_asks_with_the_accounts_category_and_only_for_customers() -> None:
    dnd = FakeDnd({AGENT})
    call = request(CUSTOMER, agents=(AGENT,), promotional=True)
    assert pre_dial(call, policy(dnd_category=3), dnd=dnd) is None
    assert dnd.asked == [(CUSTOMER, 3)]


def test_no_registry_loaded_refuses_nobody() -> None:
    assert pre_dial(request(CUSTOMER, promotional=True), policy(), dnd=None) is None


def test_the_outgoing_blocklist_only_when_the_account_says_so() -> None:
    call = request(CUSTOMER)
    assert pre_dial(call, policy(), blocklisted={CUSTOMER}) is None
    refusal = pre_dial(call, policy(block_outgoing=True), blocklisted={CUSTOMER})
    assert refusal is not None
    assert (refusal.kind, refusal.rule) == (RefusalKind.NOT_PERMITTED, RULE_BLOCKLIST)
    # An agent is dialled too: the blocklist applies to every number the call rings.
    c2c = request(CUSTOMER, agents=(AGENT,))
    refusal = pre_dial(c2c, policy(block_outgoing=True), blocklisted={AGENT})
    assert refusal is not None and AGENT in refusal.explanation


def test_order_permissions_then_blocklist_then_dnd() -> None:
    everything = policy(
        rules=DialingRules.build(blocked_networks=["airtel"]), block_outgoing=True
    )
    call = request(CUSTOMER, promotional=True)
    dnd = FakeDnd({CUSTOMER})
    first = pre_dial(call, everything, blocklisted={CUSTOMER}, dnd=dnd)
    assert first is not None and first.rule == RULE_NETWORK
    second = pre_dial(call, policy(block_outgoing=True), blocklisted={CUSTOMER}, dnd=dnd)
    assert second is not None and second.rule == RULE_BLOCKLIST
    third = pre_dial(call, policy(block_outgoing=True), blocklisted=set(), dnd=dnd)
    assert third is not None and third.rule == RULE_DND


def test_the_bridges_rules_apply_too() -> None:
    strict = CallPolicy(bridge_rules=DialingRules.build(countries=["IN"]))
    refusal = pre_dial(request(ABROAD), strict)
    assert refusal is not None and refusal.rule == RULE_COUNTRY
    assert refusal.explanation.startswith(f"bridge {BRIDGE}: ")
    assert pre_dial(request(CUSTOMER), strict) is None
