"""Channel capacity: how many calls a bridge number and an account may have up at once.

A real operator counts SIP dialogs on the trunk: each one is a channel of the caller ID it
carries. So a call holds, from the moment the engine claims it until it completes:

- an outbound call: one channel (one INVITE at a time);
- a click-to-call: the most dialogs it can have at once, ``max(agents, 1 + customers)``
  (the agents ring in parallel; once one answers, the customers ring while it waits), so
  2 for the usual one agent and one customer. Both legs carry the bridge as caller ID, and
  holding the second channel from the start means an answered agent never waits for one.

A call needing more channels than its bridge or account has takes all of them (it would
otherwise never go). Limits: ``numbers.channels`` per bridge (0: the number takes no
calls) and ``accounts.channels`` per account (NULL: unlimited).

An outbound call with no free channel stays ``queued``, first in first out per bridge and
per account, until a channel frees or its queue time runs out (``calls.queue_timeout``, else
the engine's default); then it ends MAX-USE, its ``decided_by_rule`` saying which limit held
it (``capacity.bridge`` or ``capacity.account``), and no SIP is ever sent for it.

The counts live in memory in the engine process (:class:`ChannelCounter`), which is right
for one engine: at start they are rebuilt from the calls the store shows in progress (after
crash recovery completed the interrupted ones, what is left belongs to other engines sharing
the store, and is re-read until those calls end). Several engines on one PostgreSQL each
enforce the limits on their own calls only; store-held counters are the next step.

:meth:`ChannelCounter.acquire` and :meth:`ChannelCounter.release` are for any caller: the
incoming-call work acquires a channel for a ringing DID and refuses the call at once with
MAX-USE when :meth:`~ChannelCounter.acquire` returns a rule.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.orm import Session

from voiceplane.store.models import Account, Call, Number, utcnow
from voiceplane.store.queue import Candidate, split_numbers
from voiceplane.store.repository import DUE_ORDER, due_conditions

from .rate import RateLimits

# The highest channel limit that may be set on a number or an account (API and CLI alike).
MAX_CHANNELS: Final = 100_000

BRIDGE_RULE: Final = "capacity.bridge"
ACCOUNT_RULE: Final = "capacity.account"
DEFAULT_QUEUE_TIMEOUT_S: Final = 300
IN_PROGRESS: Final = ("dialing", "ringing", "answered")


def channels_needed(service: str, from_count: int, to_count: int) -> int:
    """The channels a call holds (see the module docstring)."""
    if service == "click2call":
        return max(from_count, 1 + max(to_count, 1))
    return 1


def invites_at_start(service: str, from_count: int, to_count: int) -> int:
    """The INVITEs a call sends when it starts: what the call-rate limit counts. A
    click-to-call's customer leg follows an answered agent and is not held back."""
    if service == "click2call":
        return max(from_count, 1)
    return max(to_count, 1) if service == "incoming" else 1


@dataclass(frozen=True, slots=True)
class Need:
    """What one call asks of the counter."""

    call_id: str
    account_id: int
    bridge: str | None
    channels: int = 1
    bridge_limit: int | None = None  # None: no limit (not a registered number)
    account_limit: int | None = None  # None: unlimited


@dataclass(frozen=True, slots=True)
class _Hold:
    account_id: int
    bridge: str | None
    on_bridge: int
    on_account: int


@dataclass
class ChannelCounter:
    """Channels in use per bridge and per account, and who holds them (by call id).

    Thread-safe: the engine's claim runs in the store writer's thread, calls end in the
    event loop's. Acquiring twice for one call id holds once; releasing an id that holds
    nothing is a no-op, so a release may safely be repeated.
    """

    _lock: threading.Lock = field(default_factory=threading.Lock)
    _bridges: Counter[str] = field(default_factory=Counter)
    _accounts: Counter[int] = field(default_factory=Counter)
    _holds: dict[str, _Hold] = field(default_factory=dict)
    # The last limits seen for each bridge and account (to tell which are full).
    bridge_limits: dict[str, int | None] = field(default_factory=dict)
    account_limits: dict[int, int | None] = field(default_factory=dict)

    def acquire(self, need: Need) -> str | None:
        """Hold ``need.channels`` for ``need.call_id``; None if held, else the rule
        (:data:`BRIDGE_RULE`, :data:`ACCOUNT_RULE`) whose limit has no room."""
        with self._lock:
            return self._acquire(need)

    def _acquire(self, need: Need) -> str | None:
        if need.call_id in self._holds:
            return None
        if need.bridge is not None:
            self.bridge_limits[need.bridge] = need.bridge_limit
        self.account_limits[need.account_id] = need.account_limit
        on_bridge = _share(need.channels, need.bridge_limit)
        on_account = _share(need.channels, need.account_limit)
        if need.bridge is not None and need.bridge_limit is not None:
            if on_bridge == 0 or self._bridges[need.bridge] + on_bridge > need.bridge_limit:
                return BRIDGE_RULE
        if need.account_limit is not None:
            if on_account == 0 or self._accounts[need.account_id] + on_account > need.account_limit:
                return ACCOUNT_RULE
        self._hold(need.call_id, _Hold(need.account_id, need.bridge, on_bridge, on_account))
        return None

    def _hold(self, call_id: str, hold: _Hold) -> None:
        self._holds[call_id] = hold
        if hold.bridge is not None:
            self._bridges[hold.bridge] += hold.on_bridge
        self._accounts[hold.account_id] += hold.on_account

    def release(self, call_id: str) -> bool:
        """Free what ``call_id`` holds; True if that made room where a limit was reached
        (calls may be waiting for it)."""
        with self._lock:
            hold = self._holds.pop(call_id, None)
            if hold is None:
                return False
            was_full = self._full_bridge(hold.bridge) or self._full_account(hold.account_id)
            if hold.bridge is not None:
                self._bridges[hold.bridge] -= hold.on_bridge
                if self._bridges[hold.bridge] <= 0:
                    del self._bridges[hold.bridge]
            self._accounts[hold.account_id] -= hold.on_account
            if self._accounts[hold.account_id] <= 0:
                del self._accounts[hold.account_id]
            return was_full

    def rebuild(self, needs: Iterable[Need]) -> None:
        """Start over from ``needs`` (the calls in progress), ignoring limits."""
        with self._lock:
            self._bridges.clear()
            self._accounts.clear()
            self._holds.clear()
            for need in needs:
                on_bridge = _share(need.channels, need.bridge_limit)
                on_account = _share(need.channels, need.account_limit)
                hold = _Hold(need.account_id, need.bridge, max(on_bridge, 1), max(on_account, 1))
                self._hold(need.call_id, hold)

    def holders(self) -> set[str]:
        with self._lock:
            return set(self._holds)

    def in_use(self, *, bridge: str | None = None, account_id: int | None = None) -> int:
        """Channels held on ``bridge`` or by ``account_id``."""
        with self._lock:
            if bridge is not None:
                return self._bridges[bridge]
            if account_id is not None:
                return self._accounts[account_id]
            raise ValueError("give bridge or account_id")

    def _full_bridge(self, bridge: str | None) -> bool:
        if bridge is None:
            return False
        limit = self.bridge_limits.get(bridge)
        return limit is not None and self._bridges[bridge] >= limit

    def _full_account(self, account_id: int) -> bool:
        limit = self.account_limits.get(account_id)
        return limit is not None and self._accounts[account_id] >= limit

    def full(self) -> tuple[set[str], set[int]]:
        """The bridges and accounts with no free channel, at the limits last seen."""
        with self._lock:
            bridges = {bridge for bridge in self.bridge_limits if self._full_bridge(bridge)}
            accounts = {key for key in self.account_limits if self._full_account(key)}
            return bridges, accounts

    def limits_of(self, bridges: Iterable[str]) -> dict[str, int | None]:
        with self._lock:
            return {bridge: self.bridge_limits.get(bridge) for bridge in bridges}

    def set_limits(
        self, bridges: dict[str, int | None], accounts: dict[int, int | None]
    ) -> None:
        """Limits read again from the store (a setting changed through the API)."""
        with self._lock:
            self.bridge_limits.update(bridges)
            self.account_limits.update(accounts)


def _share(channels: int, limit: int | None) -> int:
    """The channels a call holds against ``limit``: all it needs, at most all there are."""
    return channels if limit is None else min(channels, limit)


# --- the claim pass --------------------------------------------------------------------------


class Admission:
    """Decides, call by call in queue order, which due calls the engine may start now.

    One :class:`Admission` per claim pass: a bridge or account that refused a call refuses
    every later call of that pass, so nobody overtakes a call waiting for a channel (first
    in, first out), and a call held back by the rate keeps its place the same way.

    ``screen`` (set by the engine for each claim) runs the pre-dial checks first: a call
    they refuse (False) is ended by the engine and never takes a channel or a token.
    """

    def __init__(self, counter: ChannelCounter, rates: RateLimits, now: float) -> None:
        self._counter = counter
        self._rates = rates
        self._now = now
        self._blocked_bridges: set[str] = set()
        self._blocked_accounts: set[int] = set()
        # Where a call was left waiting for a channel (not for the rate): its bridge may not
        # be full, only without room for the call at the head of its queue.
        self.waiting_bridges: set[str] = set()
        self.waiting_accounts: set[int] = set()
        self.trunk_empty = False
        self.rate_held = 0  # calls held back by the rate in this pass
        self.seen = 0  # calls offered
        self.admitted: list[str] = []
        self.screen: Callable[[Candidate], bool] | None = None
        self.screened_out = 0  # calls the screen refused in this pass

    def __call__(self, candidate: Candidate) -> bool:
        self.seen += 1
        if self.screen is not None and not self.screen(candidate):
            self.screened_out += 1
            return False
        if self.trunk_empty:
            return False
        if candidate.account_id in self._blocked_accounts or (
            candidate.bridge is not None and candidate.bridge in self._blocked_bridges
        ):
            return False
        from_count = len(split_numbers(candidate.from_number))
        to_count = len(split_numbers(candidate.to_number))
        need = Need(
            call_id=candidate.call_id,
            account_id=candidate.account_id,
            bridge=candidate.bridge,
            channels=channels_needed(candidate.service, from_count, to_count),
            bridge_limit=candidate.bridge_channels,
            account_limit=candidate.account_channels,
        )
        refused = self._counter.acquire(need)
        if refused is not None:
            self._block(candidate, refused)
            return False
        invites = invites_at_start(candidate.service, from_count, to_count)
        if not self._rates.admit(self._now, candidate.account_id, candidate.account_cps, invites):
            self._counter.release(candidate.call_id)
            self.rate_held += 1
            if not self._rates.trunk.available(self._now):
                self.trunk_empty = True
            else:
                self._blocked_accounts.add(candidate.account_id)
            return False
        self.admitted.append(candidate.call_id)
        return True

    def _block(self, candidate: Candidate, rule: str) -> None:
        if rule == BRIDGE_RULE and candidate.bridge is not None:
            self._blocked_bridges.add(candidate.bridge)
            self.waiting_bridges.add(candidate.bridge)
        else:
            self._blocked_accounts.add(candidate.account_id)
            self.waiting_accounts.add(candidate.account_id)

    def undo(self) -> None:
        """The claim's transaction failed: give back the channels of this pass."""
        for call_id in self.admitted:
            self._counter.release(call_id)
        self.admitted.clear()


# --- store queries ---------------------------------------------------------------------------


def calls_in_progress(session: Session) -> list[Need]:
    """What each call in progress holds (to rebuild the counts at start)."""
    c = Call.__table__.c
    query = (
        select(
            c.id, c.account_id, c.service, c.bridge, c.from_number, c.to_number,
            Number.__table__.c.channels, Account.__table__.c.channels.label("account_channels"),
        )  # fmt: skip
        .select_from(Call.__table__)
        .join(Account.__table__, Account.__table__.c.id == c.account_id)
        .outerjoin(Number.__table__, Number.__table__.c.e164 == c.bridge)
        .where(c.state.in_(IN_PROGRESS), c.service != "incoming")
    )
    return [
        Need(
            call_id=row.id,
            account_id=row.account_id,
            bridge=row.bridge,
            channels=channels_needed(
                row.service, len(split_numbers(row.from_number)), len(split_numbers(row.to_number))
            ),
            bridge_limit=row.channels,
            account_limit=row.account_channels,
        )
        for row in session.execute(query)
    ]


def need_for_number(
    session: Session, *, call_id: str, e164: str, channels: int = 1
) -> Need | None:
    """What a call through the registered number ``e164`` asks of the counter, with the
    number's and its account's limits as the store holds them now; None for a number that
    is not registered. For the incoming side: ``counter.acquire(need)`` returning a rule
    means refuse the call at once (MAX-USE, that rule); release the call id when it ends."""
    row = session.execute(
        select(Number.account_id, Number.channels, Account.channels)
        .join(Account, Account.id == Number.account_id)
        .where(Number.e164 == e164)
    ).first()
    if row is None:
        return None
    account_id, number_channels, account_channels = row
    return Need(
        call_id=call_id, account_id=account_id, bridge=e164, channels=channels,
        bridge_limit=number_channels, account_limit=account_channels,
    )  # fmt: skip


def current_limits(
    session: Session, *, bridges: Iterable[str], accounts: Iterable[int]
) -> tuple[dict[str, int | None], dict[int, int | None]]:
    """The limits the store holds now for ``bridges`` and ``accounts``."""
    wanted_bridges, wanted_accounts = list(bridges), list(accounts)
    found_bridges: dict[str, int | None] = dict.fromkeys(wanted_bridges)
    found_accounts: dict[int, int | None] = dict.fromkeys(wanted_accounts)
    if wanted_bridges:
        query = select(Number.e164, Number.channels).where(Number.e164.in_(wanted_bridges))
        found_bridges.update({e164: channels for e164, channels in session.execute(query)})
    if wanted_accounts:
        query2 = select(Account.id, Account.channels).where(Account.id.in_(wanted_accounts))
        found_accounts.update({key: channels for key, channels in session.execute(query2)})
    return found_bridges, found_accounts


def still_in_progress(session: Session, *, call_ids: Sequence[str]) -> set[str]:
    """Which of ``call_ids`` the store still shows in progress."""
    if not call_ids:
        return set()
    query = select(Call.id).where(Call.id.in_(list(call_ids)), Call.state.in_(IN_PROGRESS))
    return set(session.scalars(query))


def overdue_after_refresh(
    session: Session,
    *,
    counter: ChannelCounter,
    default_timeout_s: float,
    waiting: tuple[set[str], set[int]] = (set(), set()),
    now: datetime | None = None,
) -> list[Expired]:
    """The engine's periodic look at calls waiting for a channel: read the limits of the
    full bridges and accounts (and of those ``waiting`` says a call waited on) again, as
    they may have been raised through the API, then find the waiting calls whose queue time
    ran out (:func:`overdue_waiting`). Ending them is the calls layer's job
    (``voiceplane.calls.before_dialing.sweep_capacity``)."""
    bridges, accounts = counter.full()
    bridges, accounts = bridges | waiting[0], accounts | waiting[1]
    if not bridges and not accounts:
        return []
    counter.set_limits(*current_limits(session, bridges=bridges, accounts=accounts))
    full_bridges, full_accounts = counter.full()
    # A bridge still full, or one a call waited on that still has a limit.
    limits = counter.limits_of(bridges)
    bridges = full_bridges | {bridge for bridge in waiting[0] if limits.get(bridge) is not None}
    limited = {key for key in waiting[1] if counter.account_limits.get(key) is not None}
    accounts = full_accounts | limited
    return overdue_waiting(
        session, now=now or utcnow(), full_bridges=sorted(bridges),
        full_accounts=sorted(accounts), bridge_limits=counter.limits_of(bridges),
        default_timeout_s=default_timeout_s,
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class Expired:
    """A queued call whose wait for a channel is over: it ends MAX-USE by ``rule``."""

    call_id: str
    rule: str
    reason: str


def overdue_waiting(
    session: Session,
    *,
    now: datetime,
    full_bridges: Sequence[str],
    full_accounts: Sequence[int],
    bridge_limits: dict[str, int | None],
    default_timeout_s: float,
) -> list[Expired]:
    """The due queued calls of full bridges and accounts whose queue time ran out (a bridge
    of 0 channels: at once, they could never go). Reads only."""
    if not full_bridges and not full_accounts:
        return []
    c = Call.__table__.c
    holds: list[ColumnElement[bool]] = []
    if full_bridges:
        holds.append(c.bridge.in_(list(full_bridges)))
    if full_accounts:
        holds.append(c.account_id.in_(list(full_accounts)))
    query = select(
        c.id, c.bridge, c.queue_timeout, c.scheduled_at, c.created_at
    ).where(*due_conditions(now), or_(*holds))
    bridges = set(full_bridges)
    expired: list[Expired] = []
    for row in session.execute(query):
        waited_since = row.scheduled_at or row.created_at
        timeout = row.queue_timeout if row.queue_timeout is not None else default_timeout_s
        by_bridge = row.bridge in bridges
        never = by_bridge and bridge_limits.get(row.bridge) == 0
        if not never and now < waited_since + timedelta(seconds=timeout):
            continue
        if by_bridge:
            rule = BRIDGE_RULE
            reason = (
                f"bridge {row.bridge} takes no calls (0 channels)"
                if never
                else f"no free channel on bridge {row.bridge} within {timeout:g} s"
            )
        else:
            rule = ACCOUNT_RULE
            reason = f"no free channel on the account within {timeout:g} s"
        expired.append(Expired(row.id, rule, reason))
    return expired


def queue_position(session: Session, call: Call, *, now: datetime) -> int | None:
    """Where ``call`` stands among its account's due queued calls (1: next), or None when it
    is not waiting (not queued, or scheduled for later)."""
    if call.state != "queued":
        return None
    waited_since = call.scheduled_at or call.created_at
    if call.scheduled_at is not None and call.scheduled_at > now:
        return None
    due = DUE_ORDER[0]
    ahead = session.scalar(
        select(func.count())
        .select_from(Call)
        .where(
            Call.account_id == call.account_id,
            *due_conditions(now),
            or_(due < waited_since, and_(due == waited_since, Call.id < call.id)),
        )
    )
    return int(ahead or 0) + 1

