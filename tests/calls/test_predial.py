"""The engine's pre-dial gate: settings read once per account and bridge for many calls,
kept for the TTL; the blocklist read only when it applies; and, in the claim's transaction,
refused calls ended before they take a channel, even on a full bridge, each one checked
once per TTL however long it waits."""

from __future__ import annotations

from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from voiceplane.calls.engine import _cancel_queued, _claim
from voiceplane.calls.predial import PreDialGate, candidate_request, dial_request, status_of
from voiceplane.calls.status import Status
from voiceplane.policy.capacity import Admission, ChannelCounter, Need
from voiceplane.policy.checks import AccountSettings, CallPolicy
from voiceplane.policy.permissions import DialingRules
from voiceplane.policy.rate import RateLimits
from voiceplane.policy.refusal import Refusal, RefusalKind
from voiceplane.policy.settings import save_account
from voiceplane.store import repository as repo
from voiceplane.store.db import create_engine_for, migrate, session_factory
from voiceplane.store.models import Account, Call, Outbox, utcnow
from voiceplane.store.queue import CallCommand, Candidate

BRIDGE = "+918047100000"
CUSTOMER = "+919876500111"
ON_DND = "+919876500222"
ABROAD = "+14155550111"
AGENT = "+919812345111"
NO_SESSION = cast(Session, None)


@dataclass
class Reads:
    """Stands for the store: the settings and blocklist it holds, and what was read."""

    policy: CallPolicy = field(default_factory=CallPolicy)
    blocklisted: set[str] = field(default_factory=set)
    jobs: list[str] = field(default_factory=list)

    def read_policy(self, session: Session, account_id: int, bridge: str | None) -> CallPolicy:
        self.jobs.append("policy")
        return self.policy

    def read_blocklist(
        self, session: Session, account_id: int, numbers: Collection[str]
    ) -> set[str]:
        self.jobs.append("blocklist")
        return {n for n in numbers if n in self.blocklisted}


@dataclass
class Clock:
    now: float = 100.0

    def __call__(self) -> float:
        return self.now


@dataclass
class FakeDnd:
    numbers: set[str] = field(default_factory=set)
    asked: list[str] = field(default_factory=list)

    def blocks(self, e164: str, category: int | None) -> bool:
        self.asked.append(e164)
        return e164 in self.numbers


def command(*to: str, service: str = "outbound", agents: tuple[str, ...] = ()) -> CallCommand:
    now = datetime.now(UTC)
    return CallCommand(
        call_id="VC1", account_id=7, service=service, from_numbers=agents, to_numbers=to,
        bridge=BRIDGE, target=None, ring_timeout=None, retry=0, retry_interval=60, attempts=1,
        created_at=now, start_time=now, cancel_requested=False, legs=(),
    )  # fmt: skip


def gate(reads: Reads, clock: Clock | None = None, **fields: Any) -> PreDialGate:
    return PreDialGate(
        read_policy=reads.read_policy, read_blocklist=reads.read_blocklist,
        clock=clock or Clock(), **fields,
    )  # fmt: skip


def test_a_burst_reads_the_settings_once() -> None:
    reads = Reads()
    checks = gate(reads)
    results = [checks.check(NO_SESSION, dial_request(command(CUSTOMER)), 7) for _ in range(50)]
    assert results == [None] * 50
    assert reads.jobs == ["policy"]


def test_settings_are_read_again_after_the_ttl_or_forget() -> None:
    reads, clock = Reads(), Clock()
    checks = gate(reads, clock, ttl_s=5)
    request = dial_request(command(CUSTOMER))
    checks.check(NO_SESSION, request, 7)
    clock.now += 4.9
    checks.check(NO_SESSION, request, 7)
    clock.now += 0.2
    checks.check(NO_SESSION, request, 7)
    checks.forget()
    checks.check(NO_SESSION, request, 7)
    assert reads.jobs == ["policy"] * 3


def test_refusals_and_their_statuses() -> None:
    strict = Reads(CallPolicy(AccountSettings(rules=DialingRules.build(countries=["IN"]))))
    refusal = gate(strict).check(NO_SESSION, dial_request(command(ABROAD)), 7)
    assert refusal is not None and status_of(refusal) is Status.NOTALLOWED
    dnd = Refusal(RefusalKind.DO_NOT_DISTURB, "dnd", "on the registry")
    assert status_of(dnd) is Status.DND
    assert {status_of(Refusal(kind, "r", "")) for kind in RefusalKind} <= {
        status for status in Status if status.decided_before_dialing
    }


def test_the_blocklist_is_read_only_for_accounts_that_apply_it() -> None:
    reads = Reads(blocklisted={CUSTOMER})
    assert gate(reads).check(NO_SESSION, dial_request(command(CUSTOMER)), 7) is None
    assert reads.jobs == ["policy"]
    reads = Reads(CallPolicy(AccountSettings(block_outgoing=True)), {CUSTOMER})
    refusal = gate(reads).check(NO_SESSION, dial_request(command(CUSTOMER)), 7)
    assert refusal is not None and refusal.rule == "blocklist"
    assert reads.jobs == ["policy", "blocklist"]


def test_click_to_call_dials_its_agents_too() -> None:
    request = dial_request(command(CUSTOMER, service="click2call", agents=(AGENT,)))
    assert request.dialled == (AGENT, CUSTOMER)
    assert request.customers == (CUSTOMER,)
    outbound = dial_request(command(CUSTOMER, agents=(AGENT,)))
    assert outbound.dialled == (CUSTOMER,)


def test_a_queued_call_is_seen_as_the_claimed_one_would_be() -> None:
    for service in ("outbound", "click2call"):
        candidate = Candidate(
            call_id="VC1", account_id=7, service=service, from_number=AGENT,
            to_number=f"{CUSTOMER},{ABROAD}", bridge=BRIDGE, bridge_channels=None,
            account_channels=None, account_cps=None, promotional=True,
        )  # fmt: skip
        claimed = command(CUSTOMER, ABROAD, service=service, agents=(AGENT,))
        expected = dial_request(claimed)
        assert candidate_request(candidate) == expected.__class__(
            dialled=expected.dialled, customers=expected.customers, bridge=BRIDGE,
            promotional=True,
        )  # fmt: skip


def test_a_call_that_passed_is_checked_again_only_after_the_ttl() -> None:
    reads, clock, dnd = Reads(CallPolicy(AccountSettings(promotional=True))), Clock(), FakeDnd()
    checks = gate(reads, clock, ttl_s=5, dnd=dnd)
    candidate = Candidate(
        call_id="VC1", account_id=7, service="outbound", from_number=None, to_number=CUSTOMER,
        bridge=BRIDGE, bridge_channels=1, account_channels=None, account_cps=None,
    )  # fmt: skip
    for _ in range(3):  # offered on every pass while it waits
        assert checks.screening(NO_SESSION)(candidate) is True
    assert dnd.asked == [CUSTOMER]
    clock.now += 5.1
    dnd.numbers.add(CUSTOMER)  # it joined the registry while the call waited
    screening = checks.screening(NO_SESSION)
    assert screening(candidate) is False
    assert [(e.status, e.rule) for e in screening.refused] == [(Status.DND, "dnd")]


# --- in the claim's transaction, with a real store -----------------------------------------


@pytest.fixture
def factory(database_url: str) -> Iterator[sessionmaker[Session]]:
    migrate(database_url)
    engine = create_engine_for(database_url)
    yield session_factory(engine)
    engine.dispose()


def _account(factory: sessionmaker[Session]) -> int:
    with factory.begin() as session:
        account, _key = repo.create_account(session, name="acme")
        repo.add_number(session, account=account, e164=BRIDGE, kind="bridge", channels=1)
        return account.id


def _call(factory: sessionmaker[Session], account_id: int, to: str, **fields: Any) -> str:
    with factory.begin() as session:
        account = session.get(Account, account_id)
        assert account is not None
        call = repo.create_call(
            session, account=account, service="outbound", to_number=to, bridge=BRIDGE, **fields
        )
        return call.id


def _calls(factory: sessionmaker[Session]) -> dict[str, Call]:
    with factory.begin() as session:
        found = {call.id: call for call in session.scalars(select(Call))}
        session.expunge_all()
        return found


class Engine:
    """What the engine's claim pass does with the store, without SIP."""

    def __init__(self, factory: sessionmaker[Session], dnd: FakeDnd) -> None:
        self.factory = factory
        self.counter = ChannelCounter()
        self.gate = PreDialGate(dnd=dnd)

    def claim(self, limit: int = 100) -> tuple[list[str], int]:
        full_bridges, full_accounts = self.counter.full()
        admission = Admission(self.counter, RateLimits(), 0.0)
        with self.factory.begin() as session:
            commands, screening, ended = _claim(
                session, limit=limit, gate=admission, pre_dial=self.gate,
                skip_bridges=full_bridges, skip_accounts=full_accounts,
            )  # fmt: skip
        screening.keep()
        return [command.call_id for command in commands], ended.reported


def test_refused_calls_end_at_once_behind_a_full_bridge_without_a_channel(
    factory: sessionmaker[Session],
) -> None:
    account_id = _account(factory)
    with factory.begin() as session:  # the account may call India only
        settings = AccountSettings(rules=DialingRules.build(countries=["IN"]))
        save_account(session, account_id=account_id, settings=settings)
    dnd = FakeDnd({ON_DND})
    engine = Engine(factory, dnd)
    busy = _call(factory, account_id, CUSTOMER)
    assert engine.claim() == ([busy], 0)  # the bridge's one channel
    assert engine.counter.full() == ({BRIDGE}, set())
    waiting = _call(factory, account_id, CUSTOMER)  # allowed: waits for the channel
    hook = "http://127.0.0.1:1/cb"
    dnd_call = _call(factory, account_id, ON_DND, promotional=True, callback_url=hook)
    abroad = _call(factory, account_id, ABROAD)
    assert engine.claim() == ([], 1)  # nothing claimed; the DND call reported
    calls = _calls(factory)
    assert (calls[dnd_call].state, calls[dnd_call].status) == ("completed", "DND")
    assert calls[dnd_call].decided_by_rule == "dnd"
    assert (calls[abroad].status, calls[abroad].decided_by_rule) == (
        "NOTALLOWED", "permissions.country",
    )  # fmt: skip
    for call_id in (dnd_call, abroad):
        assert calls[call_id].start_time is None and calls[call_id].attempts == 0
    assert calls[waiting].state == "queued"
    assert engine.counter.holders() == {busy}  # nobody else took a channel
    with factory.begin() as session:
        outbox = session.scalars(select(Outbox).where(Outbox.call_id == dnd_call)).all()
        assert [row.url for row in outbox] == [hook]
    # The waiting call is not checked again on every pass; a new one is.
    asked = len(dnd.asked)
    assert engine.claim() == ([], 0)
    assert len(dnd.asked) == asked
    late = _call(factory, account_id, ON_DND, promotional=True)
    assert engine.claim() == ([], 0)
    assert _calls(factory)[late].status == "DND"
    # The channel frees: the waiting call goes.
    engine.counter.release(busy)
    assert engine.claim() == ([waiting], 0)


def test_calls_the_claim_did_not_reach_are_looked_at_when_their_bridge_fills(
    factory: sessionmaker[Session],
) -> None:
    """Calls queued while the bridge had room but beyond what one claim reads: when the
    bridge fills, the look at its queue takes them in."""
    account_id = _account(factory)
    dnd = FakeDnd({ON_DND})
    engine = Engine(factory, dnd)
    elsewhere = Need(call_id="elsewhere", account_id=account_id, bridge=BRIDGE, bridge_limit=1)
    assert engine.counter.acquire(elsewhere) is None
    assert engine.claim() == ([], 0)  # a look at the (empty) queue of the full bridge
    engine.counter.release("elsewhere")
    first = _call(factory, account_id, CUSTOMER)
    second = _call(factory, account_id, CUSTOMER)
    refused = _call(factory, account_id, ON_DND, promotional=True)
    assert engine.claim(limit=1) == ([first], 0)  # the DND call was not read
    assert _calls(factory)[refused].state == "queued"
    assert engine.claim() == ([], 0)  # now full: its queue since the last look
    calls = _calls(factory)
    assert (calls[refused].status, calls[second].state) == ("DND", "queued")
    assert dnd.asked == [ON_DND]  # once: the others are not promotional


def test_a_call_cancelled_in_the_queue_ends_cancel_with_its_callback(
    factory: sessionmaker[Session],
) -> None:
    account_id = _account(factory)
    hook = "http://127.0.0.1:1/cb"
    later = utcnow() + timedelta(hours=1)
    reported = _call(factory, account_id, CUSTOMER, callback_url=hook, scheduled_at=later)
    quiet = _call(factory, account_id, CUSTOMER, scheduled_at=later)
    kept = _call(factory, account_id, CUSTOMER, scheduled_at=later)
    with factory.begin() as session:
        session.execute(
            update(Call).where(Call.id.in_([reported, quiet])).values(cancel_requested_at=utcnow())
        )
        ended = _cancel_queued(session)
    assert (ended.ended, ended.reported) == (2, 1)
    calls = _calls(factory)
    for call_id in (reported, quiet):
        assert (calls[call_id].state, calls[call_id].status) == ("completed", "CANCEL")
        assert calls[call_id].reason == "cancelled before dialing"
    assert calls[kept].state == "queued"
    with factory.begin() as session:
        outbox = session.scalars(select(Outbox)).all()
        assert [(row.call_id, row.url) for row in outbox] == [(reported, hook)]
