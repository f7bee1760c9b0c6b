"""``target=flow:<id>`` / ``ivr:<id>`` on outbound calls and click-to-call's ``to=ivr:<id>``
(legacy ``receiver=ivr:<id>``): checked against the store at the API (the account's own
flow, published and not paused), stored as the call's target ``flow:<id>``."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy.orm import Session, sessionmaker

from tests.api.conftest import Doorbell, Tenant, error_of, stored_calls
from tests.api.test_legacy import as_json, legacy
from voiceplane.store import repository

FLOW = {
    "name": "Reminder",
    "steps": {
        "hello": {"kind": "say", "text": "Your appointment is tomorrow.", "next": "bye"},
        "bye": {"kind": "hangup"},
    },
}


async def new_flow(
    client: httpx.AsyncClient, tenant: Tenant, *, publish: bool = True, pause: bool = False
) -> str:
    url = f"/v1/{tenant.sid}/flows"
    response = await client.post(url, json=FLOW, headers=tenant.headers)
    assert response.status_code == 201, response.text
    flow_id: str = response.json()["id"]
    if publish:
        response = await client.post(f"{url}/{flow_id}/publish", headers=tenant.headers)
        assert response.status_code == 200, response.text
    if pause:
        response = await client.post(f"{url}/{flow_id}/pause", headers=tenant.headers)
        assert response.status_code == 200, response.text
    return flow_id


def order(tenant: Tenant, target: str) -> dict[str, Any]:
    return {"to": "+919876543210", "bridge": tenant.bridge, "target": target}


@pytest.mark.parametrize("prefix", ["flow:", "ivr:", "IVR:"])
async def test_a_published_flow_of_the_account_is_stored_as_flow_target(
    client: httpx.AsyncClient,
    acme: Tenant,
    sessions: sessionmaker[Session],
    doorbell: Doorbell,
    prefix: str,
) -> None:
    flow_id = await new_flow(client, acme)
    response = await client.post(
        acme.url("outbound"), json=order(acme, prefix + flow_id), headers=acme.headers
    )
    assert response.status_code == 202, response.text
    call_id = response.json()["id"]
    with sessions.begin() as session:
        call = repository.find_call(session, call_id=call_id)
        assert call is not None and call.target == f"flow:{flow_id}"
    assert doorbell.queued == [call_id]


async def test_another_accounts_flow_is_not_found_and_nothing_is_stored(
    client: httpx.AsyncClient, acme: Tenant, globex: Tenant, sessions: sessionmaker[Session]
) -> None:
    theirs = await new_flow(client, globex)
    response = await client.post(
        acme.url("outbound"), json=order(acme, f"flow:{theirs}"), headers=acme.headers
    )
    assert response.status_code == 400
    error = error_of(response)
    assert error["field"] == "target" and error["code"] == "unknown_flow"
    # Exactly the answer for an id that does not exist: nothing tells the flow is there.
    missing = await client.post(
        acme.url("outbound"), json=order(acme, "flow:VF0000nothere"), headers=acme.headers
    )
    assert missing.status_code == 400
    assert error_of(missing)["message"].replace("VF0000nothere", theirs) == error["message"]
    assert stored_calls(sessions) == 0


@pytest.mark.parametrize(("publish", "pause", "word"), [(False, False, "not published"),
                                                         (True, True, "paused")])  # fmt: skip
async def test_a_flow_that_cannot_run_is_refused_naming_target(
    client: httpx.AsyncClient,
    acme: Tenant,
    sessions: sessionmaker[Session],
    publish: bool,
    pause: bool,
    word: str,
) -> None:
    flow_id = await new_flow(client, acme, publish=publish, pause=pause)
    response = await client.post(
        acme.url("outbound"), json=order(acme, f"ivr:{flow_id}"), headers=acme.headers
    )
    assert response.status_code == 400
    error = error_of(response)
    assert error["field"] == "target" and word in error["message"]
    assert stored_calls(sessions) == 0


@pytest.mark.parametrize("target", ["flow:", "ivr: ", "flow:a b", "flow:../x"])
async def test_a_flow_prefix_without_a_usable_id_is_refused(
    client: httpx.AsyncClient, acme: Tenant, sessions: sessionmaker[Session], target: str
) -> None:
    response = await client.post(acme.url("outbound"), json=order(acme, target),
                                 headers=acme.headers)  # fmt: skip
    assert response.status_code == 400
    assert error_of(response)["field"] == "target"
    assert stored_calls(sessions) == 0


async def test_text_that_merely_mentions_a_flow_is_still_spoken(
    client: httpx.AsyncClient, acme: Tenant, sessions: sessionmaker[Session]
) -> None:
    response = await client.post(
        acme.url("outbound"), json=order(acme, "Our flow: improved."), headers=acme.headers
    )
    assert response.status_code == 202, response.text
    with sessions.begin() as session:
        call = repository.find_call(session, call_id=response.json()["id"])
        assert call is not None and call.target == "Our flow: improved."


# --- click-to-call: a flow as leg 2 --------------------------------------------------------


async def test_click_to_call_to_a_flow_stores_it_as_the_target_with_no_to_number(
    client: httpx.AsyncClient,
    acme: Tenant,
    sessions: sessionmaker[Session],
    doorbell: Doorbell,
) -> None:
    flow_id = await new_flow(client, acme)
    fields = {"from": "+919876543210", "to": f"ivr:{flow_id}", "bridge": acme.bridge}
    response = await client.post(acme.url("click-to-call"), json=fields, headers=acme.headers)
    assert response.status_code == 202, response.text
    call_id = response.json()["id"]
    with sessions.begin() as session:
        call = repository.find_call(session, call_id=call_id)
        assert call is not None
        assert (call.service, call.from_number, call.to_number, call.target) == (
            "click2call", "+919876543210", None, f"flow:{flow_id}",
        )  # fmt: skip
    assert doorbell.queued == [call_id]


async def test_click_to_call_to_another_accounts_or_a_paused_flow_is_refused_on_to(
    client: httpx.AsyncClient, acme: Tenant, globex: Tenant, sessions: sessionmaker[Session]
) -> None:
    theirs = await new_flow(client, globex)
    paused = await new_flow(client, acme, pause=True)
    for flow_id, code in ((theirs, "unknown_flow"), (paused, "flow_not_live")):
        fields = {"from": "+919876543210", "to": f"ivr:{flow_id}", "bridge": acme.bridge}
        response = await client.post(acme.url("click-to-call"), json=fields,
                                     headers=acme.headers)  # fmt: skip
        assert response.status_code == 400
        error = error_of(response)
        assert (error["field"], error["code"]) == ("to", code)
    assert stored_calls(sessions) == 0


async def test_legacy_click2call_takes_receiver_ivr_and_names_receiver_when_refused(
    client: httpx.AsyncClient, acme: Tenant, sessions: sessionmaker[Session]
) -> None:
    flow_id = await new_flow(client, acme)
    params = {"method": "dial.click2call", "format": "json", "api_key": acme.key,
              "caller": "+919876543210", "receiver": f"ivr:{flow_id}"}  # fmt: skip
    response = await legacy(client, params, post=True)
    assert response.status_code == 200, response.text
    call_id = as_json(response)["data"]["id"]
    with sessions.begin() as session:
        call = repository.find_call(session, call_id=call_id)
        assert call is not None and (call.to_number, call.target) == (None, f"flow:{flow_id}")

    response = await legacy(client, {**params, "receiver": "ivr:VF0000nothere"}, post=True)
    assert response.status_code == 400
    assert as_json(response)["error"]["field"] == "receiver"
    assert stored_calls(sessions) == 1


async def test_legacy_voice_call_plays_a_flow_and_names_play_when_refused(
    client: httpx.AsyncClient, acme: Tenant, sessions: sessionmaker[Session]
) -> None:
    flow_id = await new_flow(client, acme)
    params = {"method": "voice.call", "format": "json", "api_key": acme.key,
              "numbers": "+919876543210", "play": f"ivr:{flow_id}"}  # fmt: skip
    response = await legacy(client, params, post=True)
    assert response.status_code == 200, response.text
    call_id = as_json(response)["data"]["id"]
    with sessions.begin() as session:
        call = repository.find_call(session, call_id=call_id)
        assert call is not None and call.target == f"flow:{flow_id}"

    response = await legacy(client, {**params, "play": "ivr:VF0000nothere"}, post=True)
    assert response.status_code == 400
    assert as_json(response)["error"]["field"] == "play"
    assert stored_calls(sessions) == 1
