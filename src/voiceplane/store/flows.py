"""Flows and their versions, and numbers' incoming-call routing: the queries.

The documents are JSON text written by the API after validating them
(:mod:`voiceplane.calls.flows.model`); the store neither parses nor checks them. Each save
is a new version (1, 2, ...); publishing a version makes it the live one; pausing stops the
flow running without forgetting which version was live. An incoming call asks
:func:`route_for` what the called number does.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from .models import Account, Flow, FlowVersion, Number, utcnow

FLOW_ID_PREFIX: Final = "VF"


def new_flow_id() -> str:
    """A fresh public flow id: ``VF``, the creation time in ms (12 hex), 12 random hex."""
    return f"{FLOW_ID_PREFIX}{time.time_ns() // 1_000_000:012x}{secrets.token_hex(6)}"


def create_flow(
    session: Session, *, account: Account, name: str, document: str, now: datetime | None = None
) -> tuple[Flow, FlowVersion]:
    """A new flow in state ``draft`` with ``document`` as its version 1."""
    moment = now or utcnow()
    flow = Flow(
        id=new_flow_id(),
        account_id=account.id,
        name=name,
        state="draft",
        latest_version=1,
        created_at=moment,
        updated_at=moment,
    )
    version = FlowVersion(
        flow_id=flow.id, version=1, name=name, document=document, created_at=moment
    )
    session.add(flow)
    session.flush()  # the flow first: the version refers to it
    session.add(version)
    session.flush()
    return flow, version


def add_version(
    session: Session, *, flow: Flow, name: str, document: str, now: datetime | None = None
) -> FlowVersion:
    """Store ``document`` as the flow's next version (the live one does not change)."""
    moment = now or utcnow()
    locked = _lock(session, flow)
    locked.latest_version += 1
    locked.name = name
    locked.updated_at = moment
    version = FlowVersion(
        flow_id=flow.id,
        version=locked.latest_version,
        name=name,
        document=document,
        created_at=moment,
    )
    session.add(version)
    session.flush()
    return version


def _lock(session: Session, flow: Flow) -> Flow:
    """``flow`` re-read under a row lock (PostgreSQL; SQLite's write lock is taken at BEGIN),
    so two saves at once get different version numbers."""
    locked = session.scalars(
        select(Flow).where(Flow.id == flow.id).with_for_update().execution_options(
            populate_existing=True
        )
    ).one()
    return locked


def get_flow(session: Session, *, account: Account, flow_id: str) -> Flow | None:
    """The flow ``flow_id`` if it belongs to ``account``."""
    return session.scalars(
        select(Flow).where(Flow.id == flow_id, Flow.account_id == account.id)
    ).one_or_none()


def list_flows(session: Session, *, account: Account) -> list[Flow]:
    """The account's flows, newest first."""
    query = (
        select(Flow)
        .where(Flow.account_id == account.id)
        .order_by(Flow.created_at.desc(), Flow.id.desc())
    )
    return list(session.scalars(query))


def get_version(session: Session, *, flow: Flow, version: int) -> FlowVersion | None:
    return session.scalars(
        select(FlowVersion).where(FlowVersion.flow_id == flow.id, FlowVersion.version == version)
    ).one_or_none()


def publish(session: Session, *, flow: Flow, version: int, now: datetime | None = None) -> None:
    """Make ``version`` (which must exist) the live one; the flow runs again if paused."""
    flow.live_version = version
    flow.state = "published"
    flow.updated_at = now or utcnow()
    session.flush()


def pause(session: Session, *, flow: Flow, now: datetime | None = None) -> None:
    """Stop the flow running; its live version is kept for when it is published again."""
    if flow.state != "paused":
        flow.state = "paused"
        flow.updated_at = now or utcnow()
        session.flush()


def set_routing(
    session: Session,
    *,
    number: Number,
    flow: Flow | None,
    hours: str | None,
    missed_call: int | None,
    callback: str | None = None,
) -> None:
    """Set what an incoming call to ``number`` does (every field replaced)."""
    number.flow_id = flow.id if flow is not None else None
    number.hours = hours
    number.missed_call = missed_call
    number.callback_url = callback
    session.flush()


def own_number(session: Session, *, account: Account, e164: str) -> Number | None:
    """The number ``e164`` if it belongs to ``account``."""
    return session.scalars(
        select(Number).where(Number.e164 == e164, Number.account_id == account.id)
    ).one_or_none()


@dataclass(frozen=True)
class Route:
    """What an incoming call to a number does, read in one go by the incoming-call side.

    ``document`` is the live version's JSON when the flow can run; otherwise ``refusal``
    says why not (``no flow``, ``flow paused``, ``flow not published``). ``hours`` and
    ``missed_call`` are checked before the flow (docs/flows.md, "What an incoming call
    does").
    """

    number: Number
    hours: str | None
    missed_call: int | None
    flow_id: str | None
    flow_version: int | None
    document: str | None
    refusal: str | None


def route_for(session: Session, *, e164: str) -> Route | None:
    """The routing of the registered number ``e164`` (any account's), or None."""
    number = session.scalars(select(Number).where(Number.e164 == e164)).one_or_none()
    if number is None:
        return None
    flow = session.get(Flow, number.flow_id) if number.flow_id is not None else None
    refusal: str | None = None
    document: str | None = None
    if flow is None:
        refusal = "no flow"
    elif flow.state == "paused":
        refusal = "flow paused"
    elif flow.live_version is None:
        refusal = "flow not published"
    else:
        live = get_version(session, flow=flow, version=flow.live_version)
        assert live is not None  # versions are never deleted
        document = live.document
    return Route(
        number=number,
        hours=number.hours,
        missed_call=number.missed_call,
        flow_id=flow.id if flow is not None else None,
        flow_version=flow.live_version if document is not None and flow is not None else None,
        document=document,
        refusal=refusal,
    )


@dataclass(frozen=True)
class LiveFlow:
    """A flow an outgoing call runs (``target=flow:<id>``): its live version's JSON, or
    ``refusal`` (``flow paused``, ``flow not published``) when it cannot run."""

    flow_id: str
    version: int | None
    document: str | None
    refusal: str | None


def live_flow(session: Session, *, account_id: int, flow_id: str) -> LiveFlow | None:
    """The flow ``flow_id`` of the account ``account_id`` as it would run now, or None if
    the account has no such flow (another account's flow is not found either)."""
    flow = session.scalars(
        select(Flow).where(Flow.id == flow_id, Flow.account_id == account_id)
    ).one_or_none()
    if flow is None:
        return None
    if flow.state == "paused":
        return LiveFlow(flow.id, None, None, "flow paused")
    if flow.live_version is None:
        return LiveFlow(flow.id, None, None, "flow not published")
    live = get_version(session, flow=flow, version=flow.live_version)
    assert live is not None  # versions are never deleted
    return LiveFlow(flow.id, flow.live_version, live.document, None)
