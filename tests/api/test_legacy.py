"""The legacy ?method= API on /v1/: parameters, envelope formats, validation, isolation."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl
from xml.etree import ElementTree

import httpx
import pytest
from sqlalchemy.orm import Session, sessionmaker

from tests.api.conftest import Doorbell, Tenant, stored_calls
from tests.api.test_voice import completed_click_to_call, load_call, queued_call
from voiceplane.calls.status import Status
from voiceplane.store import repository


async def legacy(
    client: httpx.AsyncClient,
    params: dict[str, str],
    *,
    post: bool = False,
    headers: dict[str, str] | None = None,
    path: str = "/v1/",
) -> httpx.Response:
    if post:
        return await client.post(path, data=params, headers=headers)
    return await client.get(path, params=params, headers=headers)


def as_json(response: httpx.Response) -> dict[str, Any]:
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = response.json()
    return body


def c2c(tenant: Tenant, **extra: str) -> dict[str, str]:
    return {
        "method": "dial.click2call",
        "format": "json",
        "api_key": tenant.key,
        "caller": "9876543210-9876543211",
        "receiver": "9812345678^9812345679",
        "prefix": "91",
        **extra,
    }


# --- placing calls -------------------------------------------------------------------------


async def test_click2call_queues_a_call_and_answers_in_the_legacy_envelope(
    client: httpx.AsyncClient,
    acme: Tenant,
    sessions: sessionmaker[Session],
    doorbell: Doorbell,
) -> None:
    response = await legacy(client, c2c(acme, custom="lead 4", retry="1"), post=True)

    assert response.status_code == 200, response.text
    body = as_json(response)
    assert (body["status"], body["message"]) == ("200", "OK")
    call = load_call(sessions, body["data"]["id"])
    assert call.service == "click2call"
    assert call.from_number == "+919876543210,+919876543211"
    assert call.to_number == "+919812345678,+919812345679"
    assert call.bridge == acme.bridge  # the account's only number, as no caller_id was given
    assert (call.custom, call.retry) == ("lead 4", 1)
    assert doorbell.queued == [call.id]


async def test_click2call_takes_the_key_from_the_x_api_key_header_and_caller_id(
    client: httpx.AsyncClient, acme: Tenant, sessions: sessionmaker[Session]
) -> None:
    params = c2c(acme, caller_id=acme.bridge)
    del params["api_key"]

    response = await legacy(client, params, headers={"x-api-key": acme.key})

    assert response.status_code == 200, response.text
    assert load_call(sessions, as_json(response)["data"]["id"]).bridge == acme.bridge


async def test_the_same_answer_in_xml_and_text(
    client: httpx.AsyncClient, acme: Tenant, sessions: sessionmaker[Session]
) -> None:
    xml = await legacy(client, c2c(acme, format="xml"))
    text = await legacy(client, c2c(acme, format="text"))
    default = await legacy(client, {k: v for k, v in c2c(acme).items() if k != "format"})

    assert xml.headers["content-type"].startswith("application/xml")
    root = ElementTree.fromstring(xml.text)
    assert root.tag == "response"
    assert (root.findtext("status"), root.findtext("message")) == ("200", "OK")
    xml_id = root.findtext("data/id")
    assert text.headers["content-type"].startswith("text/plain")
    lines = dict(line.split("=", 1) for line in text.text.splitlines())
    assert (lines["status"], lines["message"]) == ("200", "OK")
    assert default.headers["content-type"].startswith("text/plain")
    assert stored_calls(sessions) == 3
    for call_id in (xml_id, lines["id"]):
        assert call_id is not None
        assert load_call(sessions, call_id).service == "click2call"


async def test_voice_call_places_one_call_per_number(
    client: httpx.AsyncClient,
    acme: Tenant,
    sessions: sessionmaker[Session],
    doorbell: Doorbell,
) -> None:
    response = await legacy(
        client,
        {
            "method": "voice.call",
            "format": "json",
            "api_key": acme.key,
            "numbers": "9876543210,+14155550100",
            "prefix": "91",
            "message": "Your OTP is 4 2 7 1",
            "retries": "2",
            "return": "1",
        },
        post=True,
    )

    assert response.status_code == 200, response.text
    data = as_json(response)["data"]
    assert data["id"] == data["ids"][0] and len(data["ids"]) == 2
    calls = [load_call(sessions, call_id) for call_id in data["ids"]]
    assert [call.to_number for call in calls] == ["+919876543210", "+14155550100"]
    assert {(c.service, c.target, c.retry, c.bridge) for c in calls} == {
        ("outbound", "Your OTP is 4 2 7 1", 2, acme.bridge)
    }
    assert doorbell.queued == data["ids"]


async def test_voice_call_plays_a_wav_file(
    client: httpx.AsyncClient, acme: Tenant, sessions: sessionmaker[Session], data_dir: Path
) -> None:
    prompt = data_dir / "media" / "otp.wav"
    prompt.parent.mkdir(parents=True)
    prompt.write_bytes(b"RIFF")
    params = {"method": "voice.call", "format": "json", "api_key": acme.key,
              "numbers": "+919876543210", "play": "otp.wav", "message": "ignored"}  # fmt: skip

    response = await legacy(client, params)

    assert response.status_code == 200, response.text
    call = load_call(sessions, as_json(response)["data"]["id"])
    assert call.target == str(prompt.resolve())


@pytest.mark.parametrize(
    ("method", "changes", "field", "status"),
    [
        ("dial.click2call", {"caller": None}, "caller", 400),
        ("dial.click2call", {"caller": "9876543210"}, "caller", 400),  # no prefix
        ("dial.click2call", {"receiver": "ivr:250142"}, "receiver", 400),
        ("dial.click2call", {"receiver": "+919812345678^12"}, "receiver", 400),
        ("dial.click2call", {"caller_id": "+918067000009"}, "caller_id", 400),
        ("dial.click2call", {"retry": "9"}, "retry", 400),
        ("dial.click2call", {"callback": "javascript:alert(1)"}, "callback", 400),
        ("dial.click2call", {"calller": "+919876543210"}, "calller", 400),
        ("voice.call", {"numbers": "+919876543210,98"}, "numbers", 400),
        ("voice.call", {"numbers": None}, "numbers", 400),
        ("voice.call", {"retries": "9"}, "retries", 400),
        ("voice.call", {"retries": "1", "retry": "1"}, "retries", 400),
        ("voice.call", {"play": "123.sound"}, "play", 400),
        ("voice.call", {"play": "missing.wav"}, "play", 400),
        ("voice.call", {"group": "7"}, "group", 400),
        ("voice.call", {"time": "2001/01/01 10:00"}, "time", 400),
        ("voice.speak", {}, "method", 400),
        (None, {}, "method", 400),
        ("dial.click2call", {"format": "php"}, "format", 400),
        ("dial.click2call", {"api_key": "vpk_wrong"}, None, 401),
        ("dial.click2call", {"api_key": None}, None, 401),
    ],
)
async def test_a_refused_request_names_the_legacy_field_and_stores_nothing(
    client: httpx.AsyncClient,
    acme: Tenant,
    sessions: sessionmaker[Session],
    doorbell: Doorbell,
    method: str | None,
    changes: dict[str, str | None],
    field: str | None,
    status: int,
) -> None:
    base = {
        "format": "json",
        "api_key": acme.key,
        "caller": "+919876543210",
        "receiver": "+919812345678",
        "numbers": "+919876543210",
    }
    if method is not None:
        base["method"] = method
    if method == "voice.call":
        del base["caller"], base["receiver"]
    else:
        del base["numbers"]
    params = {k: v for k, v in {**base, **changes}.items() if v is not None}

    response = await legacy(client, params, post=True)

    assert response.status_code == status, response.text
    if field == "format":
        body = dict(line.split("=", 1) for line in response.text.splitlines())
        assert (body["status"], body["field"]) == ("400", "format")
    else:
        body = as_json(response)
        assert body["status"] == str(status)
        assert body["data"] is None
        assert body["error"]["field"] == field
        assert body["message"] == body["error"]["message"]
    assert stored_calls(sessions) == 0
    assert doorbell.queued == []


async def test_caller_id_is_required_when_the_account_has_several_numbers(
    client: httpx.AsyncClient, acme: Tenant, sessions: sessionmaker[Session]
) -> None:
    with sessions.begin() as session:
        account = repository.get_account(session, sid=acme.sid)
        assert account is not None
        repository.add_number(session, account=account, e164="+918067000003", kind="did")

    response = await legacy(client, c2c(acme))

    assert response.status_code == 400
    assert as_json(response)["error"]["field"] == "caller_id"
    assert stored_calls(sessions) == 0


# --- reading calls -------------------------------------------------------------------------


async def test_c2cstatus_by_id_in_json_xml_and_text(
    client: httpx.AsyncClient, acme: Tenant, sessions: sessionmaker[Session]
) -> None:
    call_id = completed_click_to_call(sessions, acme)
    params = {"method": "dial.c2cstatus", "api_key": acme.key, "id": call_id}

    json_body = as_json(await legacy(client, {**params, "format": "json"}))
    xml = ElementTree.fromstring((await legacy(client, {**params, "format": "xml"})).text)
    text = (await legacy(client, params)).text.splitlines()

    [record] = json_body["data"]
    assert record["id"] == call_id
    assert (record["callfrom"], record["callto"], record["caller_id"]) == (
        "+919876543210", "+919812345678", acme.bridge
    )  # fmt: skip
    assert (record["status"], record["status1"], record["status2"]) == (
        Status.NOANSWER_LEG2.value, Status.ANSWER.value, Status.NOANSWER.value
    )  # fmt: skip
    assert (record["service"], record["custom"]) == ("Click2Call", "ticket 9")
    assert (record["start_time"], record["end_time"]) == (
        "2026-01-05 10:00:00", "2026-01-05 10:00:40"
    )  # fmt: skip
    assert record["duration"] == 40
    assert xml.findtext("data/item/id") == call_id
    assert xml.findtext("data/item/status2") == Status.NOANSWER.value
    assert text[:2] == ["status=200", "message=OK"]
    assert dict(parse_qsl(text[2], keep_blank_values=True))["status"] == Status.NOANSWER_LEG2.value


async def test_legacy_words_are_kept_whatever_the_accounts_dialect(
    client: httpx.AsyncClient, acme: Tenant, sessions: sessionmaker[Session]
) -> None:
    call_id = completed_click_to_call(sessions, acme)
    with sessions.begin() as session:
        account = repository.get_account(session, sid=acme.sid)
        assert account is not None
        account.status_dialect = "kaleyra.io"
    params = {"method": "dial.c2cstatus", "api_key": acme.key, "id": call_id, "format": "json"}

    [record] = as_json(await legacy(client, params))["data"]

    assert record["status"] == Status.NOANSWER_LEG2.value


async def test_status_lists_filter_by_service_number_and_dates(
    client: httpx.AsyncClient, acme: Tenant, sessions: sessionmaker[Session]
) -> None:
    c2c_id = completed_click_to_call(sessions, acme)  # 2026-01-05, to +919812345678
    outbound_id = queued_call(sessions, acme)  # now, to +919876543210

    async def ids(method: str, **params: str) -> list[str]:
        response = await legacy(
            client, {"method": method, "format": "json", "api_key": acme.key, **params}
        )
        assert response.status_code == 200, response.text
        return [record["id"] for record in as_json(response)["data"]]

    assert await ids("dial.c2cstatus") == [c2c_id]
    assert await ids("voice.status") == [outbound_id]
    assert await ids("voice.status", id=outbound_id) == [outbound_id]
    assert await ids("dial.c2cstatus", callto="9812345678", prefix="91") == [c2c_id]
    assert await ids("voice.status", mobile="+919812345678") == []
    assert await ids("dial.c2cstatus", fromdate="2026/01/05", todate="2026/01/05") == [c2c_id]
    assert await ids("dial.c2cstatus", fromdate="2026/01/06") == []
    assert await ids("dial.c2cstatus", limit="1", page="2") == []


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"fromdate": "05-01-2026"}, "fromdate"),
        ({"callto": "98123"}, "callto"),
        ({"limit": "0"}, "limit"),
        ({"page": "first"}, "page"),
        ({"status": "RINGING"}, "status"),
    ],
)
async def test_bad_status_list_parameters_name_the_field(
    client: httpx.AsyncClient, acme: Tenant, params: dict[str, str], field: str
) -> None:
    response = await legacy(
        client, {"method": "dial.c2cstatus", "format": "json", "api_key": acme.key, **params}
    )

    assert response.status_code == 400
    assert as_json(response)["error"]["field"] == field


async def test_another_accounts_calls_are_not_found_nor_listed(
    client: httpx.AsyncClient, acme: Tenant, globex: Tenant, sessions: sessionmaker[Session]
) -> None:
    c2c_id = completed_click_to_call(sessions, acme)
    outbound_id = queued_call(sessions, acme)
    theirs = {"format": "json", "api_key": globex.key}

    by_id = [
        await legacy(client, {**theirs, "method": "dial.c2cstatus", "id": c2c_id}),
        await legacy(client, {**theirs, "method": "voice.status", "id": outbound_id}),
        # An id of the other service is not found either: each method sees its own calls.
        await legacy(client, {"format": "json", "api_key": acme.key, "method": "voice.status",
                              "id": c2c_id}),
    ]  # fmt: skip
    lists = [
        await legacy(client, {**theirs, "method": "dial.c2cstatus"}),
        await legacy(client, {**theirs, "method": "voice.status"}),
    ]

    assert [response.status_code for response in by_id] == [404, 404, 404]
    assert {as_json(response)["error"]["field"] for response in by_id} == {"id"}
    assert [as_json(response)["data"] for response in lists] == [[], []]


async def test_the_old_paths_and_posted_json_work_too(
    client: httpx.AsyncClient, acme: Tenant, sessions: sessionmaker[Session]
) -> None:
    params = {k: v for k, v in c2c(acme).items() if k != "method"}
    old = await client.post(
        "/api/v1/index.php?method=dial.click2call", json={**params, "prefix": 91}
    )
    twice = await client.post(f"/v1/?format=json&api_key={acme.key}", data=c2c(acme))

    assert old.status_code == 200, old.text
    assert load_call(sessions, as_json(old)["data"]["id"]).service == "click2call"
    assert twice.status_code == 400
    assert as_json(twice)["error"]["field"] in {"format", "api_key"}
