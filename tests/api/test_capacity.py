"""Capacity over HTTP: account and number settings (auth, isolation, validation), a call's
queue_timeout and its queue_position in the record."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from tests.api.conftest import Tenant, error_of
from voiceplane.store.models import Account, Call


def settings_url(tenant: Tenant, path: str = "settings/capacity") -> str:
    return f"/v1/{tenant.sid}/{path}"


def number_url(tenant: Tenant, number: str | None = None) -> str:
    return settings_url(tenant, f"numbers/{number or tenant.bridge}/capacity")


async def test_the_defaults_are_unlimited_with_ten_channels_a_number(
    client: httpx.AsyncClient, acme: Tenant
) -> None:
    response = await client.get(settings_url(acme), headers=acme.headers)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "channels": None, "max_cps": None, "numbers": [{"number": acme.bridge, "channels": 10}],
    }  # fmt: skip


async def test_an_account_sets_its_channels_and_rate(
    client: httpx.AsyncClient, acme: Tenant, sessions: sessionmaker[Session]
) -> None:
    response = await client.put(
        settings_url(acme), json={"channels": 30, "max_cps": 5}, headers=acme.headers
    )
    assert response.status_code == 200, response.text
    assert (response.json()["channels"], response.json()["max_cps"]) == (30, 5)
    # A form, changing one field only; the other keeps its value.
    response = await client.put(settings_url(acme), data={"max_cps": ""}, headers=acme.headers)
    assert response.status_code == 200, response.text
    assert (response.json()["channels"], response.json()["max_cps"]) == (30, None)
    with sessions.begin() as session:
        account = session.query(Account).filter_by(sid=acme.sid).one()
        assert (account.channels, account.max_cps) == (30, None)
    response = await client.put(settings_url(acme), json={"channels": None}, headers=acme.headers)
    assert response.json()["channels"] is None


async def test_bad_settings_are_refused_naming_the_field_and_change_nothing(
    client: httpx.AsyncClient, acme: Tenant
) -> None:
    for body, field in [
        ({"channels": -1}, "channels"),
        ({"channels": "many"}, "channels"),
        ({"max_cps": -0.5}, "max_cps"),
        ({"channels": 3, "lines": 4}, "lines"),
    ]:
        response = await client.put(settings_url(acme), json=body, headers=acme.headers)
        assert response.status_code == 400, (body, response.text)
        assert error_of(response)["field"] == field
    response = await client.get(settings_url(acme), headers=acme.headers)
    assert response.json()["channels"] is None


async def test_a_number_gets_its_channels_changed(client: httpx.AsyncClient, acme: Tenant) -> None:
    response = await client.put(number_url(acme), json={"channels": 2}, headers=acme.headers)
    assert response.status_code == 200, response.text
    assert response.json() == {"number": acme.bridge, "channels": 2}
    response = await client.get(number_url(acme), headers=acme.headers)
    assert response.json()["channels"] == 2
    response = await client.put(number_url(acme), json={"channels": -2}, headers=acme.headers)
    assert response.status_code == 400 and error_of(response)["field"] == "channels"
    response = await client.put(number_url(acme), json={}, headers=acme.headers)
    assert response.status_code == 400 and error_of(response)["field"] == "channels"


async def test_keys_and_accounts_are_kept_apart(
    client: httpx.AsyncClient, acme: Tenant, globex: Tenant
) -> None:
    assert (await client.get(settings_url(acme))).status_code == 401
    wrong = {"api-key": globex.key}
    assert (await client.get(settings_url(acme), headers=wrong)).status_code == 401
    put = await client.put(settings_url(acme), json={"channels": 1}, headers=wrong)
    assert put.status_code == 401
    # Globex's own URL, naming Acme's number: not found, and not changed.
    response = await client.put(
        number_url(globex, acme.bridge), json={"channels": 0}, headers=globex.headers
    )
    assert response.status_code == 404
    response = await client.get(number_url(acme), headers=acme.headers)
    assert response.json()["channels"] == 10
    response = await client.get(settings_url(acme), headers=acme.headers)
    assert response.json()["channels"] is None


async def place(client: httpx.AsyncClient, tenant: Tenant, **fields: Any) -> httpx.Response:
    return await client.post(
        tenant.url("outbound"),
        json={"to": "+919876543210", "bridge": tenant.bridge, "target": "hi"} | fields,
        headers=tenant.headers,
    )


async def test_a_call_may_say_how_long_it_waits_for_a_channel(
    client: httpx.AsyncClient, acme: Tenant, sessions: sessionmaker[Session]
) -> None:
    response = await place(client, acme, queue_timeout=45)
    assert response.status_code == 202, response.text
    with sessions.begin() as session:
        call = session.get(Call, response.json()["id"])
        assert call is not None and call.queue_timeout == 45
    for bad in (-1, 24 * 3600 + 1, "soon"):
        response = await place(client, acme, queue_timeout=bad)
        assert response.status_code == 400 and error_of(response)["field"] == "queue_timeout"


async def test_the_record_shows_a_waiting_calls_place_in_the_queue(
    client: httpx.AsyncClient, acme: Tenant, globex: Tenant, sessions: sessionmaker[Session]
) -> None:
    ids = [(await place(client, acme)).json()["id"] for _ in range(3)]
    other = (await place(client, globex)).json()["id"]
    with sessions.begin() as session:  # the engine took the first one
        session.execute(update(Call).where(Call.id == ids[0]).values(state="dialing"))
    positions = []
    for call_id in ids:
        record = (await client.get(acme.url(f"calls/{call_id}"), headers=acme.headers)).json()
        positions.append(record["queue_position"])
    assert positions == [None, 1, 2]
    # Another account's calls are another queue.
    record = (await client.get(globex.url(f"calls/{other}"), headers=globex.headers)).json()
    assert record["queue_position"] == 1
    logs = (await client.get(acme.url("call-logs"), headers=acme.headers)).json()
    assert sorted(call["queue_position"] or 0 for call in logs["calls"]) == [0, 1, 2]
