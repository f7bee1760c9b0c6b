"""What the routes get from the app: the store, the engine's doorbell, and authentication.

There are no globals: :func:`voiceplane.api.app.create_app` puts one :class:`Backend` in
``app.state`` and the routes reach it through the :data:`BackendDep` dependency.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from fastapi import Depends, Header, Request
from sqlalchemy.orm import Session, sessionmaker

from voiceplane.api.errors import Unauthorized
from voiceplane.api.fields import OrderContext
from voiceplane.calls.commands import CallCommands
from voiceplane.store import repository
from voiceplane.store.models import Account, utcnow


@dataclass(frozen=True)
class Backend:
    """The store the API reads and writes, and the engine it tells about new work."""

    sessions: sessionmaker[Session]
    commands: CallCommands
    media_dir: Path

    def order_context(self) -> OrderContext:
        """What validating a call request needs: the time now and where audio files are."""
        return OrderContext(media_dir=self.media_dir, now=utcnow())


def backend(request: Request) -> Backend:
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
