"""What the routes get from the app: the store, the engine's doorbell, and authentication.

There are no globals: :func:`voiceplane.api.app.create_app` puts one :class:`Backend` in
``app.state`` and the routes reach it through the :data:`BackendDep` dependency.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Final, TypeVar

from fastapi import Depends, Header, Request
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from voiceplane.api import phone
from voiceplane.api.errors import InvalidInput, NotFound, Unauthorized
from voiceplane.api.fields import OrderContext
from voiceplane.api.placing import own_number
from voiceplane.calls.commands import CallCommands
from voiceplane.store import repository
from voiceplane.store.models import Account, Number, utcnow
from voiceplane.store.writer import StoreWriter

T = TypeVar("T")

# How long a key that was just checked is trusted without asking the database again. A
# revoked key keeps working at most this long in each API process.
KEY_CACHE_S: Final = 5.0
KEY_CACHE_SIZE: Final = 10_000


@dataclass
class KeyCache:
    """Accounts recently authenticated, by SID and key hash (never the key itself), and
    numbers recently seen to belong to an account (a bridge used call after call)."""

    ttl_s: float = KEY_CACHE_S
    _entries: dict[tuple[str, str], tuple[Account, float]] = field(default_factory=dict)
    _numbers: dict[tuple[int, str], float] = field(default_factory=dict)

    def get(self, sid: str, api_key: str) -> Account | None:
        entry = self._entries.get((sid, repository.hash_api_key(api_key)))
        if entry is None or entry[1] < time.monotonic():
            return None
        return entry[0]

    def put(self, sid: str, api_key: str, account: Account) -> None:
        if len(self._entries) >= KEY_CACHE_SIZE:
            self._entries.clear()  # crude, but bounded; entries are cheap to make again
        key = (sid, repository.hash_api_key(api_key))
        self._entries[key] = (account, time.monotonic() + self.ttl_s)

    def owns(self, account_id: int, e164: str) -> bool:
        """Whether ``e164`` was recently seen to be a number of ``account_id``."""
        until = self._numbers.get((account_id, e164))
        return until is not None and until >= time.monotonic()

    def remember_number(self, account_id: int, e164: str) -> None:
        if len(self._numbers) >= KEY_CACHE_SIZE:
            self._numbers.clear()
        self._numbers[(account_id, e164)] = time.monotonic() + self.ttl_s


@dataclass(frozen=True)
class Backend:
    """The store the API reads and writes, and the engine it tells about new work.

    With a ``writer`` (``voiceplane serve`` has one), new calls are stored through the
    store's group-commit writer: many requests share one transaction and one fsync, and
    the HTTP handlers never wait on SQLite's write lock.
    """

    sessions: sessionmaker[Session]
    commands: CallCommands
    media_dir: Path
    writer: StoreWriter | None = None
    keys: KeyCache = field(default_factory=KeyCache)
    readers: sessionmaker[Session] | None = None  # read-only transactions (GET, auth)

    def reading(self) -> sessionmaker[Session]:
        """Sessions for a transaction that only reads."""
        return self.readers if self.readers is not None else self.sessions

    def order_context(self) -> OrderContext:
        """What validating a call request needs: the time now and where audio files are."""
        return OrderContext(media_dir=self.media_dir, now=utcnow())

    async def account(self, *, sid: str, api_key: str | None) -> Account:
        """The account ``sid`` if ``api_key`` is one of its keys; else :class:`Unauthorized`."""
        if api_key:
            cached = self.keys.get(sid, api_key)
            if cached is not None:
                return cached
        account = await run_in_threadpool(self._authenticate, sid, api_key)
        assert api_key  # authenticate raised otherwise
        self.keys.put(sid, api_key, account)
        return account

    def _authenticate(self, sid: str, api_key: str | None) -> Account:
        with self.reading().begin() as session:
            return authenticate(session, sid=sid, api_key=api_key)

    async def check_own_number(self, account: Account, e164: str) -> None:
        """:class:`InvalidInput` (field ``bridge``) unless ``e164`` is a number of ``account``."""
        if self.keys.owns(account.id, e164):
            return
        await run_in_threadpool(self._check_own_number, account, e164)
        self.keys.remember_number(account.id, e164)

    def _check_own_number(self, account: Account, e164: str) -> None:
        with self.reading().begin() as session:
            own_number(session, account=account, e164=e164)

    async def insert_call(self, row: dict[str, Any]) -> str:
        """Store a new call row (``repository.call_row``); returns its id once durable."""
        if self.writer is not None:
            # urgent: the client waits for this commit; it goes ahead of the engine's writes
            await self.writer.submit_item(repository.insert_calls, row, urgent=True)
        else:
            await run_in_threadpool(self._write_now, lambda s: repository.insert_calls(s, [row]))
        return str(row["id"])

    def _write_now(self, job: Callable[[Session], T]) -> T:
        with self.sessions.begin() as session:
            return job(session)


async def backend(request: Request) -> Backend:
    found: Backend = request.app.state.backend
    return found


BackendDep = Annotated[Backend, Depends(backend)]
ApiKeyHeader = Annotated[
    str | None,
    Header(alias="api-key", description="Your API key (voiceplane account create)."),
]


def authenticate(session: Session, *, sid: str, api_key: str | None) -> Account:
    """The account ``sid`` if ``api_key`` is one of its keys; else :class:`Unauthorized`."""
    if not api_key:
        raise Unauthorized("send your API key in the api-key header")
    account = repository.authenticate(session, sid=sid, api_key=api_key)
    if account is None:
        raise Unauthorized("the API key is not valid for this account")
    return account


def number_in_path(session: Session, account: Account, text: str) -> Number:
    """The number of ``account`` a route's path names (``/numbers/{number}/...``): a 400
    naming ``number`` if it is no phone number, 404 if it is not this account's."""
    try:
        e164 = phone.to_e164(text)
    except phone.NumberError as exc:
        raise InvalidInput(str(exc), field="number", code="invalid_number") from None
    found = repository.get_number(session, e164=e164)
    if found is None or found.account_id != account.id:
        raise NotFound(f"no number {e164} in this account")
    return found
