"""The flow routes and number routing, /v1/{sid}/flows and /v1/{sid}/numbers/.../routing,
against a real store (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from tests.api.conftest import Tenant, error_of
from voiceplane.calls.flows.model import NumberHours, parse_flow
from voiceplane.store import flows as store
from voiceplane.store import repository
from voiceplane.store.models import FlowVersion

DID = "+918067000099"


def flow_document(greeting: str = "Welcome to Acme.", **steps: Any) -> dict[str, Any]:
    return {
        "name": "Support line",
        "steps": {
            "welcome": {"kind": "say", "text": greeting, "next": "menu"},
            "menu": {
                "kind": "menu",
                "prompt": {"say": "Press 1 for sales."},
                "branches": {"1": "sales"},
                "invalid": "bye",
            },
            "sales": {"kind": "dial", "numbers": ["+919876543210"], "not_answered": "bye"},
            "bye": {"kind": "hangup"},
            **steps,
        },
    }


def flows_url(tenant: Tenant, path: str = "") -> str:
    return f"/v1/{tenant.sid}/flows{path}"


async def create(client: httpx.AsyncClient, tenant: Tenant, document: dict[str, Any]) -> str:
    response = await client.post(flows_url(tenant), json=document, headers=tenant.headers)
    assert response.status_code == 201, response.text
    flow_id: str = response.json()["id"]
    return flow_id


def versions_stored(sessions: sessionmaker[Session]) -> int:
    with sessions.begin() as session:
        return session.scalar(select(func.count()).select_from(FlowVersion)) or 0


@pytest.fixture
def did(sessions: sessionmaker[Session], acme: Tenant) -> str:
    with sessions.begin() as session:
        account = repository.get_account(session, sid=acme.sid)
        assert account is not None
        repository.add_number(session, account=account, e164=DID, kind="did")
    return DID


# --- saving and reading flows ----------------------------------------------------------------


async def test_a_new_flow_is_version_1_of_a_draft_and_reads_back_as_sent(
    client: httpx.AsyncClient, acme: Tenant
) -> None:
    document = flow_document()
    response = await client.post(flows_url(acme), json=document, headers=acme.headers)
    assert response.status_code == 201
    created = response.json()
    assert created["id"].startswith("VF")
    assert created["name"] == "Support line" and created["state"] == "draft"
    assert (created["version"], created["latest_version"], created["live_version"]) == (1, 1, None)
    assert created["warnings"] == [] and created["definition"] == document
    assert created["created_at"].endswith("Z")

    response = await client.get(flows_url(acme, f"/{created['id']}"), headers=acme.headers)
    assert response.status_code == 200
    assert response.json() == created


async def test_each_save_is_a_new_version_and_old_ones_stay_readable(
    client: httpx.AsyncClient, acme: Tenant
) -> None:
    flow_id = await create(client, acme, flow_document("v1"))
    renamed = {**flow_document("v2"), "name": "Support line 2"}
    response = await client.put(flows_url(acme, f"/{flow_id}"), json=renamed, headers=acme.headers)
    assert response.status_code == 200
    assert (response.json()["version"], response.json()["name"]) == (2, "Support line 2")

    newest = (await client.get(flows_url(acme, f"/{flow_id}"), headers=acme.headers)).json()
    assert newest["version"] == 2 and newest["latest_version"] == 2
    assert newest["definition"]["steps"]["welcome"]["text"] == "v2"
    first = (
        await client.get(flows_url(acme, f"/{flow_id}?version=1"), headers=acme.headers)
    ).json()
    assert first["version"] == 1 and first["definition"]["steps"]["welcome"]["text"] == "v1"
    response = await client.get(flows_url(acme, f"/{flow_id}?version=3"), headers=acme.headers)
    assert response.status_code == 404
    assert error_of(response)["message"] == f"flow {flow_id} has no version 3 (the newest is 2)"


async def test_the_list_shows_the_accounts_flows_newest_first(
    client: httpx.AsyncClient, acme: Tenant, globex: Tenant
) -> None:
    first = await create(client, acme, flow_document())
    second = await create(client, acme, {**flow_document(), "name": "Sales"})
    await create(client, globex, flow_document())
    response = await client.get(flows_url(acme), headers=acme.headers)
    assert response.status_code == 200
    listed = response.json()["flows"]
    assert [flow["id"] for flow in listed] == [second, first]
    assert set(listed[0]) == {
        "id", "name", "state", "latest_version", "live_version", "created_at", "updated_at"
    }  # fmt: skip


async def test_publish_and_pause(client: httpx.AsyncClient, acme: Tenant) -> None:
    flow_id = await create(client, acme, flow_document("v1"))
    await client.put(flows_url(acme, f"/{flow_id}"), json=flow_document("v2"), headers=acme.headers)
    url = flows_url(acme, f"/{flow_id}")

    response = await client.post(f"{url}/pause", headers=acme.headers)
    assert response.status_code == 409 and "never been published" in error_of(response)["message"]

    response = await client.post(f"{url}/publish", headers=acme.headers)  # no body: the newest
    assert response.status_code == 200
    assert (response.json()["state"], response.json()["live_version"]) == ("published", 2)

    response = await client.post(f"{url}/publish", json={"version": 1}, headers=acme.headers)
    assert (response.json()["live_version"], response.json()["version"]) == (1, 1)
    assert response.json()["definition"]["steps"]["welcome"]["text"] == "v1"

    response = await client.post(f"{url}/pause", headers=acme.headers)
    assert response.status_code == 200
    assert (response.json()["state"], response.json()["live_version"]) == ("paused", 1)
    response = await client.post(f"{url}/pause", headers=acme.headers)  # again: no change
    assert response.status_code == 200 and response.json()["state"] == "paused"

    response = await client.post(f"{url}/publish", json={"version": 7}, headers=acme.headers)
    assert response.status_code == 404
    assert (await client.get(url, headers=acme.headers)).json()["state"] == "paused"

    response = await client.post(f"{url}/publish", json={"version": 0}, headers=acme.headers)
    assert response.status_code == 400 and error_of(response)["field"] == "version"

    response = await client.post(f"{url}/publish", json={"version": 2}, headers=acme.headers)
    assert (response.json()["state"], response.json()["live_version"]) == ("published", 2)


# --- refusals --------------------------------------------------------------------------------


async def test_an_invalid_flow_is_refused_naming_the_field_and_nothing_is_stored(
    client: httpx.AsyncClient, acme: Tenant, sessions: sessionmaker[Session]
) -> None:
    document = flow_document()
    document["steps"]["menu"]["branches"]["2"] = "salse"
    response = await client.post(flows_url(acme), json=document, headers=acme.headers)
    assert response.status_code == 400
    assert error_of(response) == {
        "code": "invalid_flow",
        "message": "step 'menu': branches.2 points at 'salse', which is not a step of this flow",
        "field": "steps.menu.branches.2",
    }
    response = await client.post(
        flows_url(acme), json={"name": "x", "steps": {"a": {"kind": "say"}}}, headers=acme.headers
    )
    assert error_of(response)["field"] == "steps.a.text"
    assert versions_stored(sessions) == 0


async def test_a_new_version_that_does_not_validate_changes_nothing(
    client: httpx.AsyncClient, acme: Tenant, sessions: sessionmaker[Session]
) -> None:
    flow_id = await create(client, acme, flow_document())
    response = await client.put(
        flows_url(acme, f"/{flow_id}"), json={"name": "no steps"}, headers=acme.headers
    )
    assert response.status_code == 400 and error_of(response)["field"] == "steps"
    flow = (await client.get(flows_url(acme, f"/{flow_id}"), headers=acme.headers)).json()
    assert flow["latest_version"] == 1 and versions_stored(sessions) == 1


async def test_audio_files_must_exist_in_the_media_folder(
    client: httpx.AsyncClient, acme: Tenant, data_dir: Path
) -> None:
    document = flow_document(hold={"kind": "play", "file": "prompts/hold.wav"})
    document["steps"]["menu"]["prompt"] = {"play": "menu.wav"}
    response = await client.post(flows_url(acme), json=document, headers=acme.headers)
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "unknown_audio" and error["field"] == "steps.menu.prompt.play"

    (data_dir / "media" / "prompts").mkdir(parents=True)
    (data_dir / "media" / "menu.wav").write_bytes(b"RIFF")
    response = await client.post(flows_url(acme), json=document, headers=acme.headers)
    assert error_of(response)["field"] == "steps.hold.file"
    (data_dir / "media" / "prompts" / "hold.wav").write_bytes(b"RIFF")
    response = await client.post(flows_url(acme), json=document, headers=acme.headers)
    assert response.status_code == 201
    # The hold step is reachable from nowhere: saved, with a warning.
    assert response.json()["warnings"] == [
        "step 'hold' cannot be reached from the start step 'welcome'"
    ]


async def test_a_body_that_is_not_a_json_object_is_refused(
    client: httpx.AsyncClient, acme: Tenant
) -> None:
    headers = {**acme.headers, "content-type": "application/json"}
    response = await client.post(flows_url(acme), content=b"[1, 2]", headers=headers)
    assert response.status_code == 400 and error_of(response)["code"] == "invalid_input"


async def test_another_accounts_flow_is_not_found(
    client: httpx.AsyncClient, acme: Tenant, globex: Tenant
) -> None:
    flow_id = await create(client, acme, flow_document())
    theirs = flows_url(globex, f"/{flow_id}")
    for response in [
        await client.get(theirs, headers=globex.headers),
        await client.put(theirs, json=flow_document(), headers=globex.headers),
        await client.post(f"{theirs}/publish", headers=globex.headers),
        await client.post(f"{theirs}/pause", headers=globex.headers),
    ]:
        assert response.status_code == 404
        assert error_of(response)["message"] == f"no flow {flow_id!r} in this account"
    assert (await client.get(flows_url(acme, f"/{flow_id}"), headers=acme.headers)).json()[
        "state"
    ] == "draft"


async def test_a_key_is_needed(client: httpx.AsyncClient, acme: Tenant, globex: Tenant) -> None:
    assert (await client.get(flows_url(acme))).status_code == 401
    response = await client.post(flows_url(acme), json=flow_document(), headers=globex.headers)
    assert response.status_code == 401 and error_of(response)["code"] == "unauthorized"


# --- number routing --------------------------------------------------------------------------

HOURS = {
    "timezone": "Asia/Kolkata",
    "slots": [{"days": "mon-fri", "open": "09:00", "close": "18:00"}],
    "country": "IN",
    "off_hour_prompt": {"say": "We are closed."},
}


async def test_a_number_routes_to_a_flow_with_hours_and_the_store_says_what_runs(
    client: httpx.AsyncClient, acme: Tenant, did: str, sessions: sessionmaker[Session]
) -> None:
    flow_id = await create(client, acme, flow_document())
    url = f"/v1/{acme.sid}/numbers/{did}/routing"
    hook = "https://crm.example.com/incoming"
    body = {"flow": flow_id, "hours": HOURS, "missed_call": None, "callback": hook}
    response = await client.put(url, json=body, headers=acme.headers)
    assert response.status_code == 200
    assert response.json() == {
        "number": did, "flow": flow_id, "hours": HOURS, "missed_call": None, "callback": hook,
    }  # fmt: skip
    # The number can be written without its + (and URL-encoded with it).
    response = await client.get(f"/v1/{acme.sid}/numbers/{did[1:]}/routing", headers=acme.headers)
    assert response.json()["flow"] == flow_id

    def route() -> store.Route:
        with sessions.begin() as session:
            found = store.route_for(session, e164=did)
            assert found is not None
            return found

    assert route().refusal == "flow not published" and route().document is None
    hours = route().hours
    assert hours is not None
    assert NumberHours.model_validate_json(hours).off_hour_prompt is not None

    await client.post(flows_url(acme, f"/{flow_id}/publish"), headers=acme.headers)
    live = route()
    assert live.refusal is None and live.flow_version == 1 and live.document is not None
    assert parse_flow(json.loads(live.document)).start_step == "welcome"

    await client.put(flows_url(acme, f"/{flow_id}"), json=flow_document("v2"), headers=acme.headers)
    assert route().flow_version == 1  # a new version is not live until published

    await client.post(flows_url(acme, f"/{flow_id}/pause"), headers=acme.headers)
    assert route().refusal == "flow paused" and route().document is None

    response = await client.put(url, json={"missed_call": 5}, headers=acme.headers)
    assert response.json() == {
        "number": did, "flow": None, "hours": None, "missed_call": 5, "callback": None,
    }  # fmt: skip
    assert route().refusal == "no flow" and route().missed_call == 5


@pytest.mark.parametrize(
    ("body", "field", "complaint"),
    [
        ({"hours": {"timezone": "Mars/Base"}}, "hours.timezone", "unknown timezone"),
        ({"hours": {**HOURS, "off_hour_prompt": {}}}, "hours.off_hour_prompt", "either"),
        ({"missed_call": 0}, "missed_call", "greater than or equal to 1"),
        ({"callback": "ftp://example.com/x"}, "callback", "is not an http:// or https:// URL"),
        ({"flow": "VFnope"}, "flow", "no flow 'VFnope' in this account"),
        ({"flows": "x"}, "flows", "unknown field"),
    ],
)
async def test_bad_routing_is_refused_and_changes_nothing(
    client: httpx.AsyncClient,
    acme: Tenant,
    did: str,
    body: dict[str, Any],
    field: str,
    complaint: str,
) -> None:
    url = f"/v1/{acme.sid}/numbers/{did}/routing"
    await client.put(url, json={"missed_call": 9}, headers=acme.headers)
    response = await client.put(url, json=body, headers=acme.headers)
    assert response.status_code == 400
    error = error_of(response)
    assert error["field"] == field and complaint in error["message"]
    assert (await client.get(url, headers=acme.headers)).json()["missed_call"] == 9


async def test_another_accounts_number_or_flow_cannot_be_routed(
    client: httpx.AsyncClient, acme: Tenant, globex: Tenant, did: str
) -> None:
    response = await client.put(
        f"/v1/{globex.sid}/numbers/{did}/routing", json={}, headers=globex.headers
    )
    assert response.status_code == 404
    assert error_of(response)["message"] == f"no number {did!r} in this account"
    theirs = await create(client, globex, flow_document())
    response = await client.put(
        f"/v1/{acme.sid}/numbers/{did}/routing", json={"flow": theirs}, headers=acme.headers
    )
    assert response.status_code == 400 and error_of(response)["field"] == "flow"
