"""The policy API: kaleyra.io's blocklist (100 numbers a request, status 0/1, listing), the
dialing settings of an account and of its numbers, and a call's promotional choice. Same
key auth and account isolation as the voice API; a refused request changes nothing."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy.orm import Session, sessionmaker

from tests.api.conftest import Tenant, error_of
from voiceplane.policy import blocklist, settings
from voiceplane.store import repository

NUMBERS = [f"+9198765{index:05d}" for index in range(1, 6)]
FIRST = "contacts.0"


def url(tenant: Tenant, path: str) -> str:
    return f"/v1/{tenant.sid}/{path}"


def account_id(sessions: sessionmaker[Session], tenant: Tenant) -> int:
    with sessions.begin() as session:
        account = repository.get_account(session, sid=tenant.sid)
        assert account is not None
        return account.id


def listed(sessions: sessionmaker[Session], tenant: Tenant) -> list[str]:
    owner = account_id(sessions, tenant)
    with sessions.begin() as session:
        _total, found = blocklist.entries(session, owner, limit=1000)
        return [entry.number for entry in found]


# --- blocklist -----------------------------------------------------------------------------


async def test_blocklist_kaleyra_shape_adds_and_removes(
    client: httpx.AsyncClient, acme: Tenant, sessions: sessionmaker[Session]
) -> None:
    body = {"channel": "voice", "contacts": [{"blocklist_status": 1, "numbers": NUMBERS}]}
    response = await client.post(url(acme, "contacts/blocklisted"), json=body, headers=acme.headers)
    assert response.status_code == 200, response.text
    assert response.json()["added"] == 5 and response.json()["removed"] == 0
    assert listed(sessions, acme) == NUMBERS

    body = {
        "contacts": [
            {"blocklist_status": 0, "numbers": NUMBERS[:2]},
            {"blocklist_status": 1, "numbers": ["98765 00009"]},
        ],
        "prefix": "91",
    }
    response = await client.post(url(acme, "contacts/blocklisted"), json=body, headers=acme.headers)
    assert response.status_code == 200, response.text
    assert (response.json()["added"], response.json()["removed"]) == (1, 2)
    assert {"number": "+919876500009", "blocklist_status": 1} in response.json()["numbers"]
    assert listed(sessions, acme) == [*NUMBERS[2:], "+919876500009"]


async def test_blocklist_flat_form(
    client: httpx.AsyncClient, acme: Tenant, sessions: sessionmaker[Session]
) -> None:
    form = {"numbers": ",".join(NUMBERS[:3]), "status": "1"}
    response = await client.post(url(acme, "contacts/blocklisted"), data=form, headers=acme.headers)
    assert response.status_code == 200, response.text
    form = {"numbers": NUMBERS[0], "status": "0"}
    response = await client.post(url(acme, "contacts/blocklisted"), data=form, headers=acme.headers)
    assert response.json()["removed"] == 1
    assert listed(sessions, acme) == NUMBERS[1:3]


async def test_blocklist_allows_a_hundred_numbers_and_refuses_a_hundred_and_one(
    client: httpx.AsyncClient, acme: Tenant, sessions: sessionmaker[Session]
) -> None:
    many = [f"+9198765{index:05d}" for index in range(101)]
    body = {"contacts": [{"blocklist_status": 1, "numbers": many}]}
    response = await client.post(url(acme, "contacts/blocklisted"), json=body, headers=acme.headers)
    assert response.status_code == 400
    error = error_of(response)
    assert (error["code"], error["field"]) == ("too_many_numbers", "numbers")
    assert listed(sessions, acme) == []  # nothing changed

    body = {"contacts": [{"blocklist_status": 1, "numbers": many[:100]}]}
    response = await client.post(url(acme, "contacts/blocklisted"), json=body, headers=acme.headers)
    assert response.status_code == 200, response.text
    assert response.json()["added"] == 100


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"contacts": [{"blocklist_status": 2, "numbers": NUMBERS}]}, f"{FIRST}.blocklist_status"),
        ({"contacts": [{"numbers": NUMBERS}]}, f"{FIRST}.blocklist_status"),
        ({"contacts": [{"blocklist_status": 1, "numbers": ["12"]}]}, f"{FIRST}.numbers"),
        ({"contacts": []}, "contacts"),
        ({"numbers": NUMBERS, "status": "yes"}, "status"),
        ({"numbers": [], "status": 1}, "numbers"),
        ({"numbers": NUMBERS, "status": 1, "channel": "sms"}, "channel"),
        ({"numbers": NUMBERS, "status": 1, "colour": "red"}, "colour"),
        ({"numbers": ["9876500001"], "status": 1}, "numbers"),  # no country code
        (
            {"contacts": [{"blocklist_status": 1, "numbers": NUMBERS[:1]},
                          {"blocklist_status": 0, "numbers": NUMBERS[:1]}]},
            "numbers",
        ),
    ],
)
async def test_bad_blocklist_requests_change_nothing(
    client: httpx.AsyncClient,
    acme: Tenant,
    sessions: sessionmaker[Session],
    body: dict[str, Any],
    field: str,
) -> None:
    owner = account_id(sessions, acme)
    with sessions.begin() as session:
        blocklist.change(session, owner, add=[NUMBERS[4]])
    response = await client.post(url(acme, "contacts/blocklisted"), json=body, headers=acme.headers)
    assert response.status_code == 400, response.text
    assert error_of(response)["field"] == field
    assert listed(sessions, acme) == [NUMBERS[4]]


async def test_blocklist_listing_pages_and_is_per_account(
    client: httpx.AsyncClient, acme: Tenant, globex: Tenant, sessions: sessionmaker[Session]
) -> None:
    ours, theirs_id = account_id(sessions, acme), account_id(sessions, globex)
    with sessions.begin() as session:
        blocklist.change(session, ours, add=NUMBERS)
        blocklist.change(session, theirs_id, add=["+14155550123"])
    response = await client.get(
        url(acme, "contacts/blocklisted"), params={"limit": 2, "page": 2}, headers=acme.headers
    )
    assert response.status_code == 200, response.text
    page = response.json()
    assert (page["total"], page["limit"], page["offset"], page["page"]) == (5, 2, 2, 2)
    assert [entry["number"] for entry in page["numbers"]] == NUMBERS[2:4]
    assert page["numbers"][0]["created_at"].endswith("Z")
    theirs = await client.get(url(globex, "contacts/blocklisted"), headers=globex.headers)
    assert [entry["number"] for entry in theirs.json()["numbers"]] == ["+14155550123"]


async def test_blocklist_needs_the_accounts_key(
    client: httpx.AsyncClient, acme: Tenant, globex: Tenant, sessions: sessionmaker[Session]
) -> None:
    body = {"numbers": NUMBERS, "status": 1}
    response = await client.post(url(acme, "contacts/blocklisted"), json=body)
    assert response.status_code == 401
    response = await client.post(
        url(acme, "contacts/blocklisted"), json=body, headers=globex.headers
    )
    assert response.status_code == 401
    response = await client.get(url(acme, "contacts/blocklisted"), headers=globex.headers)
    assert response.status_code == 401
    assert listed(sessions, acme) == []


def test_is_blocked_is_what_the_incoming_work_uses(
    sessions: sessionmaker[Session], acme: Tenant, globex: Tenant
) -> None:
    ours, theirs = account_id(sessions, acme), account_id(sessions, globex)
    with sessions.begin() as session:
        blocklist.change(session, ours, add=NUMBERS[:1])
        assert blocklist.is_blocked(session, ours, NUMBERS[0])
        assert not blocklist.is_blocked(session, theirs, NUMBERS[0])


# --- dialing settings ----------------------------------------------------------------------


async def test_account_settings_start_at_the_defaults_and_change_partially(
    client: httpx.AsyncClient, acme: Tenant, globex: Tenant
) -> None:
    response = await client.get(url(acme, "settings/dialing"), headers=acme.headers)
    assert response.status_code == 200, response.text
    defaults = response.json()
    assert defaults["countries"] is None and defaults["international"] is True
    assert "premium_rate" not in defaults["number_types"] and "mobile" in defaults["number_types"]
    assert (defaults["promotional"], defaults["block_outgoing"]) == (False, False)

    change = {"countries": ["in", "US"], "promotional": True, "blocked_networks": ["Airtel"]}
    response = await client.put(url(acme, "settings/dialing"), json=change, headers=acme.headers)
    assert response.status_code == 200, response.text
    assert response.json()["countries"] == ["IN", "US"]
    form = {"international": "false", "networks": "Airtel, Idea"}
    response = await client.put(url(acme, "settings/dialing"), data=form, headers=acme.headers)
    assert response.status_code == 200, response.text
    now = (await client.get(url(acme, "settings/dialing"), headers=acme.headers)).json()
    assert now == defaults | {
        "countries": ["IN", "US"],
        "international": False,
        "networks": ["airtel", "idea"],
        "blocked_networks": ["airtel"],
        "promotional": True,
    }
    theirs = (await client.get(url(globex, "settings/dialing"), headers=globex.headers)).json()
    assert theirs == defaults


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"countries": ["Narnia"]}, "countries"),
        ({"number_types": ["cellular"]}, "number_types"),
        ({"international": "perhaps"}, "international"),
        ({"block_outgoing": "sometimes"}, "block_outgoing"),
        ({"colour": "red"}, "colour"),
    ],
)
async def test_bad_settings_change_nothing(
    client: httpx.AsyncClient, acme: Tenant, change: dict[str, Any], field: str
) -> None:
    before = (await client.get(url(acme, "settings/dialing"), headers=acme.headers)).json()
    change = {"countries": ["IN"], **change}  # a good field alongside is not applied either
    response = await client.put(url(acme, "settings/dialing"), json=change, headers=acme.headers)
    assert response.status_code == 400, response.text
    assert error_of(response)["field"] == field
    after = (await client.get(url(acme, "settings/dialing"), headers=acme.headers)).json()
    assert after == before


async def test_number_settings_and_isolation(
    client: httpx.AsyncClient, acme: Tenant, globex: Tenant, sessions: sessionmaker[Session]
) -> None:
    mine = url(acme, f"numbers/{acme.bridge}/dialing")
    response = await client.get(mine, headers=acme.headers)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "number": acme.bridge,
        "countries": None,
        "international": True,
        "number_types": None,
        "networks": None,
        "blocked_networks": [],
    }
    response = await client.put(mine, json={"countries": "IN"}, headers=acme.headers)
    assert response.status_code == 200 and response.json()["countries"] == ["IN"]
    # Another account's number is not found, whether read or changed; an unknown one too.
    for other in (globex.bridge, "+918067009999"):
        theirs = url(acme, f"numbers/{other}/dialing")
        assert (await client.get(theirs, headers=acme.headers)).status_code == 404
        response = await client.put(theirs, json={"countries": "US"}, headers=acme.headers)
        assert response.status_code == 404
        assert set(error_of(response)) == {"code", "message", "field"}
    with sessions.begin() as session:
        number = repository.get_number(session, e164=globex.bridge)
        assert number is not None
        assert settings.number_rules(session, number_id=number.id).countries is None
    # Account-only settings are not a number's.
    response = await client.put(mine, json={"promotional": True}, headers=acme.headers)
    assert response.status_code == 400 and error_of(response)["field"] == "promotional"
    response = await client.get(url(acme, "numbers/12/dialing"), headers=acme.headers)
    assert response.status_code == 400 and error_of(response)["field"] == "number"
    response = await client.get(mine, headers=globex.headers)
    assert response.status_code == 401


# --- a call's promotional choice -----------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "stored"),
    [
        ({}, None),
        ({"promotional": "true"}, True),
        ({"promotional": False}, False),
        ({"type": "promotional"}, True),
        ({"type": "transactional"}, False),
        ({"type": "transactional", "promotional": "0"}, False),
    ],
)
async def test_a_call_can_say_whether_it_is_promotional(
    client: httpx.AsyncClient,
    acme: Tenant,
    sessions: sessionmaker[Session],
    fields: dict[str, Any],
    stored: bool | None,
) -> None:
    for path, body in (
        ("outbound", {"to": NUMBERS[0], "target": "hi"}),
        ("click-to-call", {"from": NUMBERS[0], "to": NUMBERS[1]}),
    ):
        response = await client.post(
            acme.url(path), json={"bridge": acme.bridge, **body, **fields}, headers=acme.headers
        )
        assert response.status_code == 202, response.text
        with sessions.begin() as session:
            call = repository.find_call(session, call_id=response.json()["id"])
            assert call is not None and call.promotional is stored


async def test_a_call_that_contradicts_itself_is_refused(
    client: httpx.AsyncClient, acme: Tenant
) -> None:
    body = {"to": NUMBERS[0], "bridge": acme.bridge, "promotional": True, "type": "transactional"}
    response = await client.post(acme.url("outbound"), json=body, headers=acme.headers)
    assert response.status_code == 400
    assert error_of(response)["field"] == "type"
    body = {"to": NUMBERS[0], "bridge": acme.bridge, "type": "marketing"}
    response = await client.post(acme.url("outbound"), json=body, headers=acme.headers)
    assert response.status_code == 400 and error_of(response)["field"] == "type"


async def test_the_legacy_api_takes_the_promotional_choice_too(
    client: httpx.AsyncClient, acme: Tenant, sessions: sessionmaker[Session]
) -> None:
    for method, params, stored in (
        ("voice.call", {"numbers": "9876500001", "message": "hi", "promotional": "1"}, True),
        ("dial.click2call", {"caller": "9876500001", "receiver": "9876500002",
                             "type": "transactional"}, False),
    ):  # fmt: skip
        response = await client.post(
            "/v1/",
            data={"method": method, "format": "json", "api_key": acme.key, "prefix": "91",
                  **params},
        )  # fmt: skip
        assert response.status_code == 200, response.text
        with sessions.begin() as session:
            call = repository.find_call(session, call_id=response.json()["data"]["id"])
            assert call is not None and call.promotional is stored
