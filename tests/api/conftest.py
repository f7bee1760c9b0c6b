"""Fixtures for the voice API: the app on a freshly migrated store (SQLite and PostgreSQL),
two accounts with a bridge number each, and a doorbell that records what the API rang."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from voiceplane.api.app import create_app
from voiceplane.config import load_config
from voiceplane.store import repository
from voiceplane.store.db import create_engine_for, migrate, session_factory
from voiceplane.store.models import Call


@dataclass
class Doorbell:
    """A ``CallCommands`` that remembers every ring, and what the store held at that moment."""

    sessions: sessionmaker[Session]
    queued: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)

    def call_queued(self, call_id: str) -> None:
        # Rung only after the commit: another session must already see the call.
        with self.sessions.begin() as session:
            assert repository.find_call(session, call_id=call_id) is not None
        self.queued.append(call_id)

    def cancel_requested(self, call_id: str) -> None:
        with self.sessions.begin() as session:
            call = repository.find_call(session, call_id=call_id)
            assert call is not None and call.cancel_requested_at is not None
        self.cancelled.append(call_id)


@dataclass(frozen=True)
class Tenant:
    """An account as a client sees it: its SID, its key and its bridge number."""

    sid: str
    key: str
    bridge: str

    @property
    def headers(self) -> dict[str, str]:
        return {"api-key": self.key}

    def url(self, path: str) -> str:
        return f"/v1/{self.sid}/voice/{path}"


@pytest.fixture
def sessions(database_url: str) -> Iterator[sessionmaker[Session]]:
    migrate(database_url)
    engine = create_engine_for(database_url)
    yield session_factory(engine)
    engine.dispose()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def doorbell(sessions: sessionmaker[Session]) -> Doorbell:
    return Doorbell(sessions)


@pytest.fixture
def app(sessions: sessionmaker[Session], doorbell: Doorbell, data_dir: Path) -> FastAPI:
    config = load_config(None, {"VOICEPLANE_DATA_DIR": str(data_dir)})
    return create_app(config, ready=lambda: True, sessions=sessions, commands=doorbell)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://voiceplane.test") as c:
        yield c


def make_tenant(sessions: sessionmaker[Session], name: str, bridge: str) -> Tenant:
    with sessions.begin() as session:
        account, key = repository.create_account(session, name=name)
        repository.add_number(session, account=account, e164=bridge, kind="bridge")
        return Tenant(account.sid, key, bridge)


@pytest.fixture
def acme(sessions: sessionmaker[Session]) -> Tenant:
    return make_tenant(sessions, "Acme", "+918067000001")


@pytest.fixture
def globex(sessions: sessionmaker[Session]) -> Tenant:
    return make_tenant(sessions, "Globex", "+918067000002")


def stored_calls(sessions: sessionmaker[Session]) -> int:
    """How many calls the store holds, of every account."""
    with sessions.begin() as session:
        return session.scalar(select(func.count()).select_from(Call)) or 0


def error_of(response: httpx.Response) -> dict[str, Any]:
    """The contract's error object of ``response`` (and nothing else in the body)."""
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "field"}
    error: dict[str, Any] = body["error"]
    return error
