"""The engine's pre-dial gate: runs :mod:`voiceplane.policy.checks` for a due call before it
takes a channel or a call-rate token, and turns a refusal into the call's status.

The checks run in the claim's transaction (the store writer's thread), so a call the rules
refuse ends DND or NOTALLOWED at once, whatever the capacity: it never waits for a channel
(to end MAX-USE instead) and never holds one. Two ways a due call is seen:

- the claim offers it to :class:`~voiceplane.policy.capacity.Admission`, whose ``screen``
  (a :class:`Screening`) checks it before anything else;
- a bridge or account with no free channel is not read by the claim at all (so a long
  queue is not read again on every pass): :meth:`Screening.look_at_waiting` reads, for
  each such bridge and account, only the calls queued since it last looked there (with a
  margin for rows stored late), and checks those.

A call that passed is not checked again for ``ttl_s`` seconds (it is offered on every pass
while it waits); after that, the next offer checks it again, so a call that waited long is
dialled under the settings of the moment. The settings of an account and its bridge are
read in the same transaction and kept for ``ttl_s`` seconds, so a burst of calls costs one
read per account and bridge; a change made through the admin API or CLI applies within
that time. The blocklist is read per call, and only for accounts that apply it to outgoing
calls. The DND registry is asked in memory.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy.orm import Session

from voiceplane.policy.blocklist import blocklisted_among
from voiceplane.policy.checks import CallPolicy, DialRequest, DndRegistry, pre_dial
from voiceplane.policy.refusal import Refusal, RefusalKind
from voiceplane.policy.settings import call_policy
from voiceplane.store.queue import CallCommand, Candidate, split_numbers, waiting_on

from .before_dialing import Ending
from .status import Status

SETTINGS_TTL_S: Final = 5.0
MAX_CACHED: Final = 10_000
# How far back a look at a full bridge's queue reaches before the last one: a call row is
# stamped when the API makes it and stored a little later (the writer's batch; another
# process), so a row stamped just before the last look may not have been there yet.
LATE_ROWS: Final = timedelta(seconds=2)
MAX_MARKS: Final = 10_000

# Policy names kinds of refusal; the status words are this layer's (DESIGN.md, Layers).
STATUS_OF: Final = {
    RefusalKind.NOT_PERMITTED: Status.NOTALLOWED,
    RefusalKind.DO_NOT_DISTURB: Status.DND,
}

PolicyReader = Callable[[Session, int, str | None], CallPolicy]
BlocklistReader = Callable[[Session, int, Collection[str]], set[str]]


def status_of(refusal: Refusal) -> Status:
    return STATUS_OF[refusal.kind]


def ending_of(call_id: str, refusal: Refusal) -> Ending:
    """How a refused call ends: decided before dialing, the record names the rule."""
    return Ending(call_id, status_of(refusal), refusal.explanation, refusal.rule)


def dial_request(command: CallCommand) -> DialRequest:
    """What the checks see of a call: click-to-call dials its agents (``from``) too."""
    agents = command.from_numbers if command.service == "click2call" else ()
    return DialRequest(
        dialled=(*agents, *command.to_numbers),
        customers=command.to_numbers,
        bridge=command.bridge,
        promotional=command.promotional,
    )


def candidate_request(candidate: Candidate) -> DialRequest:
    """:func:`dial_request` for a call still in the queue."""
    customers = split_numbers(candidate.to_number)
    agents = split_numbers(candidate.from_number) if candidate.service == "click2call" else ()
    return DialRequest(
        dialled=(*agents, *customers),
        customers=customers,
        bridge=candidate.bridge,
        promotional=candidate.promotional,
    )


def _read_policy(session: Session, account_id: int, bridge: str | None) -> CallPolicy:
    return call_policy(session, account_id=account_id, bridge=bridge)


@dataclass
class _Marks:
    """When the queue of each full bridge and account was last looked at (wall clock)."""

    bridges: dict[str, datetime] = field(default_factory=dict)
    accounts: dict[int, datetime] = field(default_factory=dict)


class PreDialGate:
    """See the module docstring. ``dnd`` may be set (or replaced) while the engine runs.

    Its state is used from the store writer's thread (the claim); :meth:`forget` may be
    called from any thread.
    """

    def __init__(
        self,
        *,
        dnd: DndRegistry | None = None,
        ttl_s: float = SETTINGS_TTL_S,
        read_policy: PolicyReader = _read_policy,
        read_blocklist: BlocklistReader = blocklisted_among,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.dnd = dnd
        self._ttl_s = ttl_s
        self._read_policy = read_policy
        self._read_blocklist = read_blocklist
        self._clock = clock
        self._cache: dict[tuple[int, str | None], tuple[float, CallPolicy]] = {}
        self._passed: dict[str, float] = {}  # call id -> when it passed its checks
        self._next_prune = 0.0
        self._marks = _Marks()

    def check(self, session: Session, request: DialRequest, account_id: int) -> Refusal | None:
        """None if the call may be dialled, else why not."""
        policy = self.policy(session, account_id, request.bridge)
        blocklisted: set[str] = set()
        if policy.account.block_outgoing:
            blocklisted = self._read_blocklist(session, account_id, request.dialled)
        return pre_dial(request, policy, blocklisted=blocklisted, dnd=self.dnd)

    def policy(self, session: Session, account_id: int, bridge: str | None) -> CallPolicy:
        """The settings for a call, from the cache or read in ``session``."""
        key = (account_id, bridge)
        now = self._clock()
        entry = self._cache.get(key)
        if entry is None or entry[0] < now:
            if len(self._cache) >= MAX_CACHED:
                self._cache.clear()  # crude but bounded; an entry costs one read to remake
            entry = (now + self._ttl_s, self._read_policy(session, account_id, bridge))
            self._cache[key] = entry
        return entry[1]

    def forget(self) -> None:
        """Drop every cached setting and pass: the next call is checked against the store."""
        self._cache = {}
        self._passed = {}

    def screening(self, session: Session) -> Screening:
        """The checks of one claim pass, in its transaction."""
        now = self._clock()
        if now >= self._next_prune:
            self._next_prune = now + self._ttl_s
            self._passed = {key: at for key, at in self._passed.items() if at > now - self._ttl_s}
        return Screening(self, session, now)

    def claimed(self, call_ids: Collection[str]) -> None:
        for call_id in call_ids:
            self._passed.pop(call_id, None)

    def _screen(self, candidate: Candidate, session: Session, now: float) -> Refusal | None:
        passed = self._passed.get(candidate.call_id)
        if passed is not None and passed > now - self._ttl_s:
            return None
        refusal = self.check(session, candidate_request(candidate), candidate.account_id)
        if refusal is None:
            self._passed[candidate.call_id] = now
        return refusal


class Screening:
    """The pre-dial checks of one claim pass (see the module docstring): call it with each
    candidate the claim offers; :attr:`refused` is how the refused ones end."""

    def __init__(self, gate: PreDialGate, session: Session, now: float) -> None:
        self._gate = gate
        self._session = session
        self._now = now
        self.refused: list[Ending] = []
        self.looked: _Marks | None = None  # the marks to keep once the claim is stored

    def __call__(self, candidate: Candidate) -> bool:
        """True if the call may go on to the capacity and rate checks."""
        refusal = self._gate._screen(candidate, self._session, self._now)
        if refusal is None:
            return True
        self.refused.append(ending_of(candidate.call_id, refusal))
        return False

    def look_at_waiting(
        self, *, now: datetime, bridges: Collection[str], accounts: Collection[int]
    ) -> None:
        """Check the calls queued on ``bridges`` and ``accounts`` (which the claim will not
        read) since the last look there. :meth:`keep` the new marks once stored."""
        marks = self._gate._marks
        since_bridges = {key: _since(marks.bridges.get(key)) for key in bridges}
        since_accounts = {key: _since(marks.accounts.get(key)) for key in accounts}
        for candidate in waiting_on(
            self._session, now=now, bridges=since_bridges, accounts=since_accounts
        ):
            self(candidate)
        self.looked = _Marks(dict.fromkeys(bridges, now), dict.fromkeys(accounts, now))

    def keep(self) -> None:
        """The claim's transaction is stored: its looks count."""
        if self.looked is None:
            return
        marks = self._gate._marks
        if len(marks.bridges) + len(marks.accounts) >= MAX_MARKS:
            marks.bridges.clear()  # bounded; a key without a mark is looked at whole
            marks.accounts.clear()
        marks.bridges.update(self.looked.bridges)
        marks.accounts.update(self.looked.accounts)


def _since(mark: datetime | None) -> datetime | None:
    return None if mark is None else mark - LATE_ROWS
