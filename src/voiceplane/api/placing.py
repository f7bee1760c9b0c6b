"""Storing a validated call request as a queued call (both APIs use this).

The caller holds the transaction and, once it has committed, rings the engine's doorbell
(``CallCommands.call_queued``): the call is in the store before anyone is told about it.

``bridge`` must be a number registered to the account (kind ``bridge`` or ``did``). Any other
number, another account's included, is refused with 400 and the field ``bridge``: it is a bad
value in the request, like a malformed number, and answering 404 would suggest a wrong URL.
A ``target`` naming a flow (``flow:<id>``) is checked the same way: the account's own flow,
published and not paused, else 400 with the field ``target`` (another account's flow is
"no flow", exactly like an unknown id).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from voiceplane.api.errors import InvalidInput
from voiceplane.api.schemas import ClickToCallRequest, OutboundRequest
from voiceplane.calls.flow_target import flow_id_of
from voiceplane.store import repository
from voiceplane.store.flows import live_flow
from voiceplane.store.models import Account


def outbound_row(*, account: Account, order: OutboundRequest) -> dict[str, Any]:
    """The row of a queued outbound call for ``order`` (its ``id`` is the call id)."""
    return repository.call_row(
        account_id=account.id,
        service="outbound",
        to_number=order.to,
        bridge=order.bridge,
        target=order.target,
        retry=order.retry,
        retry_interval=order.interval,
        scheduled_at=order.time,
        ring_timeout=order.timeout,
        callback_url=order.callback,
        dlr_url=order.dlrurl,
        custom=order.custom,
        promotional=order.is_promotional,
        queue_timeout=order.queue_timeout,
    )


def click_to_call_row(*, account: Account, order: ClickToCallRequest) -> dict[str, Any]:
    """The row of a queued click-to-call for ``order``. A ``to`` naming a flow is stored as
    the call's ``target`` (``flow:<id>``), with no ``to`` number: nobody else is dialled."""
    to_flow = flow_id_of(order.to) is not None
    return repository.call_row(
        account_id=account.id,
        service="click2call",
        from_number=order.from_,
        to_number=None if to_flow else order.to,
        target=order.to if to_flow else None,
        bridge=order.bridge,
        retry=order.retry,
        scheduled_at=order.time,
        ring_timeout=order.timeout,
        callback_url=order.callback,
        dlr_url=order.dlrurl,
        custom=order.custom,
        promotional=order.is_promotional,
        queue_timeout=order.queue_timeout,
    )


def store_outbound(session: Session, *, account: Account, order: OutboundRequest) -> str:
    """Check the bridge (and a flow target) and store a queued outbound call; its id."""
    own_number(session, account=account, e164=order.bridge)
    check_target_flow(session, account=account, target=order.target)
    row = outbound_row(account=account, order=order)
    repository.insert_calls(session, [row])
    return str(row["id"])


def store_click_to_call(
    session: Session, *, account: Account, order: ClickToCallRequest
) -> str:
    """Check the bridge (and a flow as ``to``) and store a queued click-to-call; its id."""
    own_number(session, account=account, e164=order.bridge)
    check_target_flow(session, account=account, target=order.to, field="to")
    row = click_to_call_row(account=account, order=order)
    repository.insert_calls(session, [row])
    return str(row["id"])


def own_number(session: Session, *, account: Account, e164: str, field: str = "bridge") -> str:
    """``e164`` if it is a number of ``account``; else :class:`InvalidInput` naming ``field``."""
    number = repository.get_number(session, e164=e164)
    if number is None or number.account_id != account.id:
        raise InvalidInput(
            f"{e164} is not a number of this account (register it with voiceplane number add)",
            field=field,
            code="unknown_number",
        )
    return number.e164


def check_target_flow(
    session: Session, *, account: Account, target: str | None, field: str = "target"
) -> None:
    """:class:`InvalidInput` naming ``field`` unless ``target`` is no flow, or a flow of
    ``account`` that can run now (published, not paused)."""
    flow_id = flow_id_of(target)  # the schema validated the form already
    if flow_id is None:
        return
    live = live_flow(session, account_id=account.id, flow_id=flow_id)
    if live is None:
        raise InvalidInput(f"no flow {flow_id} in this account", field=field, code="unknown_flow")
    if live.document is None:
        raise InvalidInput(
            f"flow {flow_id} cannot run: {live.refusal} (publish a version first)",
            field=field,
            code="flow_not_live",
        )
