"""The engine's pre-dial gate: runs :mod:`voiceplane.policy.checks` for a claimed call before
any SIP is sent, and turns a refusal into the call's status.

The settings of an account and its bridge come from the store through the writer's thread
(never a blocking read in the event loop) and are kept for ``ttl_s`` seconds, so a burst of
calls costs one read per account and bridge; a change made through the admin API or CLI
applies within that time. The blocklist is read per call, and only for accounts that apply
it to outgoing calls. The DND registry is asked in memory.
"""

from __future__ import annotations

import asyncio
import functools
import time
from typing import Final

from sqlalchemy.orm import Session

from voiceplane.policy.blocklist import blocklisted_among
from voiceplane.policy.checks import CallPolicy, DialRequest, DndRegistry, pre_dial
from voiceplane.policy.refusal import Refusal, RefusalKind
from voiceplane.policy.settings import call_policy
from voiceplane.store.queue import CallCommand
from voiceplane.store.writer import StoreWriter

from .status import Status

SETTINGS_TTL_S: Final = 5.0
MAX_CACHED: Final = 10_000

# Policy names kinds of refusal; the status words are this layer's (DESIGN.md, Layers).
STATUS_OF: Final = {
    RefusalKind.NOT_PERMITTED: Status.NOTALLOWED,
    RefusalKind.DO_NOT_DISTURB: Status.DND,
}


def status_of(refusal: Refusal) -> Status:
    return STATUS_OF[refusal.kind]


def dial_request(command: CallCommand) -> DialRequest:
    """What the checks see of a call: click-to-call dials its agents (``from``) too."""
    agents = command.from_numbers if command.service == "click2call" else ()
    return DialRequest(
        dialled=(*agents, *command.to_numbers),
        customers=command.to_numbers,
        bridge=command.bridge,
        promotional=command.promotional,
    )


class PreDialGate:
    """See the module docstring. ``dnd`` may be set (or replaced) while the engine runs."""

    def __init__(
        self, writer: StoreWriter, *, dnd: DndRegistry | None = None, ttl_s: float = SETTINGS_TTL_S
    ) -> None:
        self._writer = writer
        self.dnd = dnd
        self._ttl_s = ttl_s
        self._cache: dict[tuple[int, str | None], tuple[float, asyncio.Future[CallPolicy]]] = {}

    async def check(self, command: CallCommand) -> Refusal | None:
        """None if the call may be dialled, else why not."""
        policy = await self.policy(command.account_id, command.bridge)
        request = dial_request(command)
        blocklisted: set[str] = set()
        if policy.account.block_outgoing:
            read = functools.partial(
                _blocklisted, account_id=command.account_id, numbers=request.dialled
            )
            blocklisted = await self._writer.submit(read)
        return pre_dial(request, policy, blocklisted=blocklisted, dnd=self.dnd)

    async def policy(self, account_id: int, bridge: str | None) -> CallPolicy:
        """The settings for a call, from the cache or the store (one read for many waiters)."""
        key = (account_id, bridge)
        now = time.monotonic()
        entry = self._cache.get(key)
        if entry is None or entry[0] < now or _failed(entry[1]):
            if len(self._cache) >= MAX_CACHED:
                self._cache.clear()  # crude but bounded; an entry costs one read to remake
            read = functools.partial(_policy, account_id=account_id, bridge=bridge)
            entry = (now + self._ttl_s, self._writer.submit(read))
            self._cache[key] = entry
        future = entry[1]
        if future.done():
            return future.result()  # the usual case: no new future per call
        return await asyncio.shield(future)  # one waiter's cancellation spares the others

    def forget(self) -> None:
        """Drop every cached setting (the next call reads the store)."""
        self._cache.clear()


def _policy(session: Session, *, account_id: int, bridge: str | None) -> CallPolicy:
    return call_policy(session, account_id=account_id, bridge=bridge)


def _blocklisted(session: Session, *, account_id: int, numbers: tuple[str, ...]) -> set[str]:
    return blocklisted_among(session, account_id, numbers)


def _failed(future: asyncio.Future[CallPolicy]) -> bool:
    return future.done() and (future.cancelled() or future.exception() is not None)
