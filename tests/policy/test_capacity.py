"""Channel capacity: the counter, the claim gate (FIFO per bridge and account), the queue
timeout, the queue position and the counts rebuilt after a crash."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from voiceplane.calls.before_dialing import expire_waiting, sweep_capacity
from voiceplane.calls.status import Status
from voiceplane.policy.capacity import (
    ACCOUNT_RULE,
    BRIDGE_RULE,
    Admission,
    ChannelCounter,
    Need,
    calls_in_progress,
    channels_needed,
    need_for_number,
    queue_position,
    still_in_progress,
)
from voiceplane.policy.rate import RateLimits
from voiceplane.store import repository as repo
from voiceplane.store.db import create_engine_for, migrate, session_factory
from voiceplane.store.models import Account, Call, Number, Outbox
from voiceplane.store.queue import claim_due

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
BRIDGE = "+918047100000"
OTHER_BRIDGE = "+918047100001"


@pytest.fixture
def factory(database_url: str) -> Iterator[sessionmaker[Session]]:
    migrate(database_url)
    engine = create_engine_for(database_url)
    yield session_factory(engine)
    engine.dispose()


# --- the counter -----------------------------------------------------------------------------


def need(call_id: str, bridge: str | None = BRIDGE, **fields: object) -> Need:
    values: dict[str, object] = {"account_id": 1, "bridge_limit": 2} | fields
    return Need(call_id=call_id, bridge=bridge, **values)  # type: ignore[arg-type]


def test_a_bridge_takes_as_many_calls_as_it_has_channels() -> None:
    counter = ChannelCounter()
    assert counter.acquire(need("a")) is None
    assert counter.acquire(need("b")) is None
    assert counter.acquire(need("c")) == BRIDGE_RULE
    assert counter.in_use(bridge=BRIDGE) == 2
    assert counter.full() == ({BRIDGE}, set())
    assert counter.release("a") is True  # it was full: someone may be waiting
    assert counter.acquire(need("c")) is None
    assert counter.release("b") is True and counter.release("b") is False  # no double release
    assert counter.in_use(bridge=BRIDGE) == 1


def test_the_account_limit_counts_every_bridge_of_the_account() -> None:
    counter = ChannelCounter()
    assert counter.acquire(need("a", account_limit=2, bridge_limit=10)) is None
    assert counter.acquire(need("b", OTHER_BRIDGE, account_limit=2, bridge_limit=10)) is None
    assert counter.acquire(need("c", account_limit=2, bridge_limit=10)) == ACCOUNT_RULE
    assert counter.acquire(need("d", account_id=2, bridge_limit=10)) is None  # another account
    assert counter.in_use(account_id=1) == 2 and counter.in_use(account_id=2) == 1


def test_acquiring_twice_for_one_call_holds_once() -> None:
    counter = ChannelCounter()
    assert counter.acquire(need("a", bridge_limit=1)) is None
    assert counter.acquire(need("a", bridge_limit=1)) is None
    assert counter.in_use(bridge=BRIDGE) == 1


def test_a_click_to_call_holds_a_channel_per_dialog_it_can_have() -> None:
    assert channels_needed("outbound", 0, 1) == 1
    assert channels_needed("click2call", 1, 1) == 2  # agent + customer
    assert channels_needed("click2call", 3, 1) == 3  # three agents ring at once
    assert channels_needed("click2call", 1, 2) == 3  # the agent waits while two ring
    counter = ChannelCounter()
    assert counter.acquire(need("c2c", channels=2, bridge_limit=3)) is None
    assert counter.acquire(need("c2c-2", channels=2, bridge_limit=3)) == BRIDGE_RULE
    assert counter.acquire(need("out", bridge_limit=3)) is None


def test_a_call_needing_more_than_there_is_takes_everything_and_zero_takes_nothing() -> None:
    counter = ChannelCounter()
    assert counter.acquire(need("big", channels=5, bridge_limit=2)) is None
    assert counter.in_use(bridge=BRIDGE) == 2
    assert counter.acquire(need("x", bridge_limit=0, bridge="+910")) == BRIDGE_RULE
    assert counter.acquire(need("y", bridge_limit=None, account_limit=0)) == ACCOUNT_RULE


def test_unknown_bridges_and_unlimited_accounts_are_not_limited() -> None:
    counter = ChannelCounter()
    for index in range(50):
        assert counter.acquire(need(str(index), bridge=None, bridge_limit=None)) is None
    assert counter.full() == (set(), set())


def test_the_counter_is_safe_across_threads() -> None:
    counter = ChannelCounter()
    taken: list[str] = []

    def grab(prefix: str) -> None:
        for index in range(2000):
            call_id = f"{prefix}{index}"
            if counter.acquire(need(call_id, bridge_limit=10)) is None:
                taken.append(call_id)
                counter.release(call_id)

    threads = [threading.Thread(target=grab, args=(name,)) for name in "abcd"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert counter.in_use(bridge=BRIDGE) == 0 and len(taken) == 8000


def test_rebuild_starts_over_from_the_calls_in_progress() -> None:
    counter = ChannelCounter()
    counter.acquire(need("old"))
    counter.rebuild([need("a", channels=2), need("b", OTHER_BRIDGE, account_id=2)])
    assert counter.holders() == {"a", "b"}
    assert counter.in_use(bridge=BRIDGE) == 2 and counter.in_use(bridge=OTHER_BRIDGE) == 1
    assert counter.release("a") is True  # 2 of 2: it was full


# --- the store: claim, expire, position, rebuild -------------------------------------------


def _account(
    factory: sessionmaker[Session], *, channels: int | None = None, cps: float | None = None
) -> int:
    with factory.begin() as session:
        account, _key = repo.create_account(session, name="acme")
        account.channels, account.max_cps = channels, cps
        repo.add_number(session, account=account, e164=BRIDGE, kind="bridge", channels=2)
        repo.add_number(session, account=account, e164=OTHER_BRIDGE, kind="bridge", channels=5)
        return account.id


def _calls(
    factory: sessionmaker[Session], account_id: int, count: int, *, bridge: str = BRIDGE,
    service: str = "outbound", start: int = 0, **fields: object,
) -> list[str]:  # fmt: skip
    ids = []
    with factory.begin() as session:
        account = session.get(Account, account_id)
        assert account is not None
        for index in range(count):
            call = repo.create_call(
                session, account=account, service=service, to_number=f"+9198765{start + index:05}",
                from_number="+919000000001" if service == "click2call" else None, bridge=bridge,
                now=NOW - timedelta(seconds=100 - start - index), **fields,  # type: ignore[arg-type]
            )  # fmt: skip
            ids.append(call.id)
    return ids


def _claim(
    factory: sessionmaker[Session], counter: ChannelCounter, rates: RateLimits | None = None,
    *, limit: int = 100, at: float = 0.0,
) -> list[str]:  # fmt: skip
    admission = Admission(counter, rates or RateLimits(), at)
    bridges, accounts = counter.full()
    with factory.begin() as session:
        commands = claim_due(
            session, now=NOW, limit=limit, gate=admission, skip_bridges=bridges,
            skip_accounts=accounts,
        )  # fmt: skip
    return [command.call_id for command in commands]


def _state(factory: sessionmaker[Session], call_id: str) -> Call:
    with factory.begin() as session:
        call = repo.find_call(session, call_id=call_id)
        assert call is not None
        session.expunge(call)
        return call


def test_the_claim_takes_only_calls_with_a_free_channel_in_queue_order(
    factory: sessionmaker[Session],
) -> None:
    account_id = _account(factory)
    first = _calls(factory, account_id, 5)
    other = _calls(factory, account_id, 1, bridge=OTHER_BRIDGE, start=10)
    counter = ChannelCounter()
    # Bridge 1 has 2 channels: its two oldest go, the rest wait; the other bridge's call is
    # not stuck behind them.
    assert _claim(factory, counter) == first[:2] + other
    assert _state(factory, first[2]).state == "queued"
    assert _claim(factory, counter) == []  # nothing freed
    counter.release(first[0])
    assert _claim(factory, counter) == [first[2]]  # the oldest waiting one, not any
    counter.release(first[1])
    counter.release(first[2])
    assert _claim(factory, counter) == first[3:5]


def test_the_account_limit_holds_across_bridges(factory: sessionmaker[Session]) -> None:
    account_id = _account(factory, channels=3)
    ids = _calls(factory, account_id, 2, bridge=OTHER_BRIDGE) + _calls(
        factory, account_id, 2, bridge=OTHER_BRIDGE, start=5
    )
    counter = ChannelCounter()
    assert _claim(factory, counter) == ids[:3]
    assert counter.full() == (set(), {account_id})


def test_a_click_to_call_that_does_not_fit_is_not_overtaken(factory: sessionmaker[Session]) -> None:
    account_id = _account(factory)
    one = _calls(factory, account_id, 1)
    c2c = _calls(factory, account_id, 1, service="click2call", start=1)
    later = _calls(factory, account_id, 1, start=2)
    counter = ChannelCounter()
    # 1 channel taken, the click-to-call needs 2 of the 1 left: it waits, and the outbound
    # call behind it, which would fit, waits too (first in, first out).
    assert _claim(factory, counter) == one
    assert counter.in_use(bridge=BRIDGE) == 1
    counter.acquire(need("someone else", bridge_limit=2, account_id=99))  # bridge now full
    counter.release("someone else")
    assert _claim(factory, counter) == []
    counter.release(one[0])
    assert _claim(factory, counter) == c2c
    counter.release(c2c[0])
    assert _claim(factory, counter) == later


def test_the_rate_holds_calls_back_in_order(factory: sessionmaker[Session]) -> None:
    account_id = _account(factory, cps=1)
    ids = _calls(factory, account_id, 3, bridge=OTHER_BRIDGE)
    counter = ChannelCounter()
    rates = RateLimits()
    assert _claim(factory, counter, rates, at=0.0) == ids[:1]
    assert _claim(factory, counter, rates, at=0.5) == []
    assert counter.in_use(bridge=OTHER_BRIDGE) == 1  # the held-back call gave its channel back
    assert _claim(factory, counter, rates, at=1.0) == ids[1:2]
    assert _claim(factory, counter, rates, at=2.0) == ids[2:]


def test_queue_timeout_ends_waiting_calls_max_use_naming_the_rule(
    factory: sessionmaker[Session],
) -> None:
    account_id = _account(factory, channels=3)
    waiting = _calls(factory, account_id, 4)  # created 100 .. 97 s before NOW
    short = _calls(factory, account_id, 1, start=50, callback_url="http://127.0.0.1:1/cb")
    with factory.begin() as session:
        session.execute(update(Call).where(Call.id == short[0]).values(queue_timeout=10))
    counter = ChannelCounter()
    assert _claim(factory, counter) == waiting[:2]
    with factory.begin() as session:
        expired = expire_waiting(
            session, now=NOW, full_bridges=[BRIDGE], full_accounts=[],
            bridge_limits={BRIDGE: 2}, default_timeout_s=98.5,
        )  # fmt: skip
    # waiting[2] was created 98 s ago (under 98.5), waiting[3] 97 s ago; short waited 50 s of 10.
    assert [item.call_id for item in expired] == [short[0]]
    with factory.begin() as session:
        expired = expire_waiting(
            session, now=NOW, full_bridges=[BRIDGE], full_accounts=[],
            bridge_limits={BRIDGE: 2}, default_timeout_s=97.5,
        )  # fmt: skip
    assert [item.call_id for item in expired] == [waiting[2]]
    call = _state(factory, waiting[2])
    assert (call.state, call.status, call.decided_by_rule) == ("completed", "MAX-USE", BRIDGE_RULE)
    assert call.reason is not None and "no free channel on bridge" in call.reason
    assert call.start_time is None and call.legs == []  # never dialled
    reported = _state(factory, short[0])
    assert reported.status == Status.MAX_USE.value and reported.decided_by_rule == BRIDGE_RULE
    with factory.begin() as session:
        rows = session.query(Outbox).filter(Outbox.call_id == short[0]).all()
        assert [row.kind for row in rows] == ["status"]  # the final callback was stored
    with factory.begin() as session:  # an account limit names the account rule
        expired = expire_waiting(
            session, now=NOW, full_bridges=[], full_accounts=[account_id],
            bridge_limits={}, default_timeout_s=0,
        )  # fmt: skip
    assert [(item.call_id, item.rule) for item in expired] == [(waiting[3], ACCOUNT_RULE)]


def test_a_bridge_of_zero_channels_ends_its_calls_at_once(factory: sessionmaker[Session]) -> None:
    account_id = _account(factory)
    with factory.begin() as session:
        session.execute(update(Number).where(Number.e164 == BRIDGE).values(channels=0))
    ids = _calls(factory, account_id, 2)
    counter = ChannelCounter()
    assert _claim(factory, counter) == []
    with factory.begin() as session:
        ended, reported = sweep_capacity(session, counter=counter, default_timeout_s=3600)
    assert (ended, reported) == (2, 0)
    assert _state(factory, ids[0]).reason == f"bridge {BRIDGE} takes no calls (0 channels)"


def test_the_sweep_reads_raised_limits_before_ending_anyone(factory: sessionmaker[Session]) -> None:
    account_id = _account(factory)
    ids = _calls(factory, account_id, 3)
    counter = ChannelCounter()
    assert _claim(factory, counter) == ids[:2]
    with factory.begin() as session:
        session.execute(update(Number).where(Number.e164 == BRIDGE).values(channels=3))
    with factory.begin() as session:
        assert sweep_capacity(session, counter=counter, default_timeout_s=0) == (0, 0)
    assert counter.full() == (set(), set())
    assert _claim(factory, counter) == ids[2:]


def test_queue_position_counts_the_accounts_waiting_calls_ahead(
    factory: sessionmaker[Session],
) -> None:
    account_id = _account(factory)
    ids = _calls(factory, account_id, 4)
    later = _calls(factory, account_id, 1, start=5, scheduled_at=NOW + timedelta(hours=1))
    counter = ChannelCounter()
    assert _claim(factory, counter) == ids[:2]
    with factory.begin() as session:
        positions = []
        for call_id in ids + later:
            call = repo.find_call(session, call_id=call_id)
            assert call is not None
            positions.append(queue_position(session, call, now=NOW))
    assert positions == [None, None, 1, 2, None]


def test_counts_are_rebuilt_from_the_calls_in_progress(factory: sessionmaker[Session]) -> None:
    account_id = _account(factory, channels=5)
    ids = _calls(factory, account_id, 2)
    ids += _calls(factory, account_id, 1, service="click2call", start=3)
    done = _calls(factory, account_id, 1, start=4)
    with factory.begin() as session:
        states = ("dialing", "answered", "ringing", "completed")
        for call_id, state in zip(ids + done, states, strict=True):
            session.execute(update(Call).where(Call.id == call_id).values(state=state))
    with factory.begin() as session:
        holding = calls_in_progress(session)
    assert sorted(item.call_id for item in holding) == sorted(ids)
    counter = ChannelCounter()
    counter.rebuild(holding)
    # Two outbound calls (1 each) and a click-to-call (2) on a 2-channel bridge: 4 held,
    # over the limit, as the store says; nothing new goes until they end.
    assert counter.in_use(bridge=BRIDGE) == 4 and counter.in_use(account_id=account_id) == 4
    waiting = _calls(factory, account_id, 1, start=9)
    assert _claim(factory, counter) == []
    with factory.begin() as session:
        session.execute(update(Call).where(Call.id.in_(ids)).values(state="completed"))
        assert still_in_progress(session, call_ids=ids) == set()
    for call_id in ids:
        counter.release(call_id)
    assert _claim(factory, counter) == waiting


@pytest.mark.parametrize("service", ["outbound", "click2call"])
def test_a_failed_claim_gives_its_channels_back(
    factory: sessionmaker[Session], service: str
) -> None:
    account_id = _account(factory)
    _calls(factory, account_id, 2, service=service)
    counter = ChannelCounter()
    admission = Admission(counter, RateLimits(), 0.0)
    with pytest.raises(RuntimeError), factory.begin() as session:
        claim_due(session, now=NOW, limit=10, gate=admission)
        raise RuntimeError("the batch failed")
    assert counter.holders()
    admission.undo()
    assert counter.holders() == set() and counter.in_use(bridge=BRIDGE) == 0


def test_an_incoming_call_over_capacity_is_refused_at_once(factory: sessionmaker[Session]) -> None:
    account_id = _account(factory, channels=3)
    with factory.begin() as session:
        assert need_for_number(session, call_id="x", e164="+15550000000") is None
        needs = [need_for_number(session, call_id=f"in{i}", e164=BRIDGE) for i in range(3)]
    assert needs[0] == Need("in0", account_id, BRIDGE, 1, bridge_limit=2, account_limit=3)
    counter = ChannelCounter()
    verdicts = [counter.acquire(need) for need in needs if need is not None]
    assert verdicts == [None, None, BRIDGE_RULE]  # the DID's 2 channels are taken
    counter.release("in0")
    assert counter.acquire(needs[2]) is None  # type: ignore[arg-type]


def test_a_call_waiting_on_a_bridge_that_is_not_full_still_times_out(
    factory: sessionmaker[Session],
) -> None:
    account_id = _account(factory)
    with factory.begin() as session:
        session.execute(update(Number).where(Number.e164 == BRIDGE).values(channels=3))
    first, second = _calls(factory, account_id, 2, service="click2call")
    counter = ChannelCounter()
    admission = Admission(counter, RateLimits(), 0.0)
    with factory.begin() as session:
        claimed = claim_due(session, now=NOW, limit=10, gate=admission)
    # The second click-to-call needs 2 of the 1 channel left: the bridge is not full, but
    # the call waits on it, and the engine tells the sweep so.
    assert [command.call_id for command in claimed] == [first]
    assert counter.full() == (set(), set())
    assert admission.waiting_bridges == {BRIDGE}
    with factory.begin() as session:
        assert sweep_capacity(session, counter=counter, default_timeout_s=0) == (0, 0)
        waiting = (admission.waiting_bridges, set[int]())
        ended = sweep_capacity(session, counter=counter, default_timeout_s=0, waiting=waiting)
    assert ended == (1, 0)
    call = _state(factory, second)
    assert (call.status, call.decided_by_rule) == ("MAX-USE", BRIDGE_RULE)
