"""The kaleyra.io-style routes, /v1/{sid}/voice/..., against a real store."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.orm import Session, sessionmaker

from tests.api.conftest import Doorbell, Tenant, error_of, stored_calls
from voiceplane.calls.status import Status
from voiceplane.store import repository
from voiceplane.store.models import Call, utcnow

BRIDGE = "+918067000001"
CONTRACT_KEYS = {
    "id", "service", "state", "status", "from", "to", "bridge", "custom", "reason",
    "rule", "created_at", "start_time", "answer_time", "end_time", "duration", "billsec", "legs",
    "queue_position", "keypress", "recording",
}  # fmt: skip
LEG_KEYS = {
    "leg", "number", "status", "sip_code", "sip_reason", "q850_cause", "hangup_by",
    "start_time", "ring_time", "answer_time", "end_time",
}  # fmt: skip


def load_call(sessions: sessionmaker[Session], call_id: str) -> Call:
    with sessions.begin() as session:
        call = repository.find_call(session, call_id=call_id)
        assert call is not None
        return call


def soon(**delta: float) -> str:
    return (datetime.now(UTC) + timedelta(**delta)).isoformat()


# --- placing calls ---------------------------------------------------------------------------


async def test_outbound_from_a_form_is_stored_normalised_and_rings_the_engine(
    client: httpx.AsyncClient,
    acme: Tenant,
    sessions: sessionmaker[Session],
    doorbell: Doorbell,
) -> None:
    when = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=2)
    form = {
        "to": "98765 43210",
        "prefix": "91",
        "bridge": BRIDGE,
        "target": "Your order has shipped",
        "retry": "2",
        "interval": "120",
        "time": when.isoformat(),
        "timeout": "45",
        "callback": "https://crm.example/voice?status={status}",
        "dlrurl": "http://crm.example/dlr",
        "custom": "order-17",
    }

    response = await client.post(acme.url("outbound"), data=form, headers=acme.headers)

    assert response.status_code == 202, response.text
    body = response.json()
    assert body == {"id": body["id"], "state": "queued"}
    call = load_call(sessions, body["id"])
    assert (call.service, call.state, call.status) == ("outbound", "queued", None)
    assert (call.to_number, call.from_number, call.bridge) == ("+919876543210", None, BRIDGE)
    assert call.target == "Your order has shipped"
    assert (call.retry, call.retry_interval, call.ring_timeout) == (2, 120, 45)
    assert call.scheduled_at == when
    assert call.callback_url == "https://crm.example/voice?status={status}"
    assert call.dlr_url == "http://crm.example/dlr"
    assert call.custom == "order-17"
    assert doorbell.queued == [body["id"]]


async def test_outbound_from_json_takes_numbers_as_numbers_and_defaults(
    client: httpx.AsyncClient, acme: Tenant, sessions: sessionmaker[Session]
) -> None:
    response = await client.post(
        acme.url("outbound"),
        json={"to": 9876543210, "prefix": 91, "bridge": BRIDGE},
        headers=acme.headers,
    )

    assert response.status_code == 202, response.text
    call = load_call(sessions, response.json()["id"])
    assert call.to_number == "+919876543210"
    assert (call.retry, call.retry_interval, call.ring_timeout) == (0, 60, 30)
    assert (call.target, call.scheduled_at, call.callback_url, call.custom) == (
        None, None, None, None
    )  # fmt: skip


async def test_a_prefix_also_reads_numbers_that_repeat_the_country_code(
    client: httpx.AsyncClient, acme: Tenant, sessions: sessionmaker[Session]
) -> None:
    response = await client.post(
        acme.url("outbound"),
        data={"to": "919876543210", "prefix": "+91", "bridge": "8067000001"},
        headers=acme.headers,
    )

    assert response.status_code == 202, response.text
    call = load_call(sessions, response.json()["id"])
    assert (call.to_number, call.bridge) == ("+919876543210", BRIDGE)


async def test_click_to_call_stores_parallel_legs_as_e164_lists(
    client: httpx.AsyncClient,
    acme: Tenant,
    sessions: sessionmaker[Session],
    doorbell: Doorbell,
) -> None:
    response = await client.post(
        acme.url("click-to-call"),
        data={
            "from": "+919876543210-9876543211",
            "to": "9812345678^+14155550100",
            "bridge": BRIDGE,
            "prefix": "91",
            "retry": "1",
            "timeout": "20",
            "custom": "ticket 9",
        },
        headers=acme.headers,
    )

    assert response.status_code == 202, response.text
    call = load_call(sessions, response.json()["id"])
    assert call.service == "click2call"
    assert call.from_number == "+919876543210,+919876543211"
    assert call.to_number == "+919812345678,+14155550100"
    assert (call.bridge, call.retry, call.ring_timeout, call.custom) == (BRIDGE, 1, 20, "ticket 9")
    assert doorbell.queued == [call.id]


async def test_a_wav_target_is_stored_as_an_absolute_path(
    client: httpx.AsyncClient, acme: Tenant, sessions: sessionmaker[Session], data_dir: Path
) -> None:
    prompt = data_dir / "media" / "welcome.wav"
    prompt.parent.mkdir(parents=True)
    prompt.write_bytes(b"RIFF")

    relative = await client.post(
        acme.url("outbound"),
        data={"to": "+919876543210", "bridge": BRIDGE, "target": "welcome.wav"},
        headers=acme.headers,
    )
    absolute = await client.post(
        acme.url("outbound"),
        data={"to": "+919876543210", "bridge": BRIDGE, "target": str(prompt)},
        headers=acme.headers,
    )

    for response in (relative, absolute):
        assert response.status_code == 202, response.text
        assert load_call(sessions, response.json()["id"]).target == str(prompt.resolve())


async def test_a_wav_target_outside_the_media_folder_is_refused(
    client: httpx.AsyncClient, acme: Tenant, sessions: sessionmaker[Session], data_dir: Path
) -> None:
    outside = data_dir / "secret.wav"
    outside.parent.mkdir(parents=True, exist_ok=True)
    outside.write_bytes(b"RIFF")
    (data_dir / "media").mkdir(exist_ok=True)
    for target in (str(outside), "../secret.wav"):
        response = await client.post(
            acme.url("outbound"),
            data={"to": "+919876543210", "bridge": BRIDGE, "target": target},
            headers=acme.headers,
        )
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error["field"] == "target" and "media folder" in error["message"]


async def test_a_kaleyra_json_target_is_read_as_text_to_speak(
    client: httpx.AsyncClient, acme: Tenant, sessions: sessionmaker[Session]
) -> None:
    target = json.dumps([{"message": {"language": "en-US", "text": "Hello {name}"}}])

    response = await client.post(
        acme.url("outbound"),
        data={"to": "+919876543210", "bridge": BRIDGE, "target": target},
        headers=acme.headers,
    )

    assert response.status_code == 202, response.text
    assert load_call(sessions, response.json()["id"]).target == "Hello {name}"


VALID_OUTBOUND = {"to": "+919876543210", "bridge": BRIDGE}
VALID_C2C = {"from": "+919876543210", "to": "+919812345678", "bridge": BRIDGE}


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"to": None}, "to", "required"),
        ({"to": "9876543210"}, "to", "no country code"),
        ({"to": "+91987654"}, "to", "not a valid telephone number"),
        ({"to": "1-800-FLOWERS"}, "to", "not a telephone number"),
        ({"to": "+919876543210^+919876543211"}, "to", "not a telephone number"),
        ({"prefix": "999", "to": "9876543210"}, "prefix", "not a country calling code"),
        ({"prefix": "ninety-one"}, "prefix", "country calling code"),
        ({"bridge": "+918067000009"}, "bridge", "not a number of this account"),
        ({"bridge": "8067000001"}, "bridge", "no country code"),
        ({"retry": "6"}, "retry", "less than or equal to 5"),
        ({"retry": "-1"}, "retry", "greater than or equal to 0"),
        ({"retry": "twice"}, "retry", "integer"),
        ({"interval": "5"}, "interval", "greater than or equal to 10"),
        ({"timeout": "0"}, "timeout", "greater than or equal to 1"),
        ({"timeout": "600"}, "timeout", "less than or equal to 180"),
        ({"time": "2001-01-01T00:00:00Z"}, "time", "not in the future"),
        ({"time": "in an hour"}, "time", "not a time"),
        ({"target": "missing.wav"}, "target", "no audio file"),
        ({"target": "x" * 1001}, "target", "longer than 1000"),
        ({"target": '[{"flow": 12}]'}, "target", "flows are not supported"),
        ({"target": "[not json"}, "target", "not valid JSON"),
        ({"callback": "ftp://crm.example/x"}, "callback", "http"),
        ({"callback": "crm.example/x"}, "callback", "http"),
        ({"callback": "https://crm.example/x?s={stauts}"}, "callback", "unknown callback"),
        ({"dlrurl": "https://crm.example/a b"}, "dlrurl", "blanks"),
        ({"custom": "x" * 256}, "custom", "at most 255"),
        ({"calback": "https://crm.example"}, "calback", "unknown field"),
    ],
)
async def test_a_bad_outbound_field_is_a_400_naming_it_and_stores_nothing(
    client: httpx.AsyncClient,
    acme: Tenant,
    sessions: sessionmaker[Session],
    doorbell: Doorbell,
    changes: dict[str, str | None],
    field: str,
    words: str,
) -> None:
    form = {k: v for k, v in {**VALID_OUTBOUND, **changes}.items() if v is not None}

    response = await client.post(acme.url("outbound"), data=form, headers=acme.headers)

    assert response.status_code == 400, response.text
    error = error_of(response)
    assert error["field"] == field
    assert words in error["message"]
    assert stored_calls(sessions) == 0
    assert doorbell.queued == []


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"from": None}, "from", "required"),
        ({"from": "+919876543210-+919876543210"}, "from", "same number twice"),
        ({"from": "-".join(f"+9198765432{i:02}" for i in range(11))}, "from", "at most 10"),
        ({"to": "+919812345678^12"}, "to", "not a telephone number"),
        ({"to": "+919812345678^9812345679"}, "to", "no country code"),
        ({"bridge": None}, "bridge", "required"),
        ({"interval": "60"}, "interval", "unknown field"),
        ({"time": str(int(datetime.now(UTC).timestamp()) + 40 * 86400)}, "time", "30 days"),
    ],
)
async def test_a_bad_click_to_call_field_is_a_400_naming_it_and_stores_nothing(
    client: httpx.AsyncClient,
    acme: Tenant,
    sessions: sessionmaker[Session],
    changes: dict[str, str | None],
    field: str,
    words: str,
) -> None:
    fields = {k: v for k, v in {**VALID_C2C, **changes}.items() if v is not None}

    response = await client.post(acme.url("click-to-call"), json=fields, headers=acme.headers)

    assert response.status_code == 400, response.text
    error = error_of(response)
    assert (error["field"], error["code"]) == (field, "invalid_input")
    assert words in error["message"]
    assert stored_calls(sessions) == 0


@pytest.mark.parametrize(
    ("content", "content_type", "status", "field"),
    [
        (b"{not json", "application/json", 400, None),
        (b'["to"]', "application/json", 400, None),
        (b"to=%2B919876543210", "text/plain", 415, None),
        (b"to=%2B919876543210&to=%2B919876543211&bridge=x", "application/x-www-form-urlencoded",
         400, "to"),
    ],
)  # fmt: skip
async def test_a_body_that_cannot_be_read_is_refused(
    client: httpx.AsyncClient,
    acme: Tenant,
    sessions: sessionmaker[Session],
    content: bytes,
    content_type: str,
    status: int,
    field: str | None,
) -> None:
    response = await client.post(
        acme.url("outbound"),
        content=content,
        headers={**acme.headers, "content-type": content_type},
    )

    assert response.status_code == status
    assert error_of(response)["field"] == field
    assert stored_calls(sessions) == 0


# --- authentication and isolation ------------------------------------------------------------


def requests_of(tenant: Tenant, call_id: str) -> list[tuple[str, str, dict[str, Any] | None]]:
    return [
        ("POST", tenant.url("outbound"), VALID_OUTBOUND),
        ("POST", tenant.url("click-to-call"), VALID_C2C),
        ("GET", tenant.url(f"calls/{call_id}"), None),
        ("POST", tenant.url(f"calls/{call_id}/cancel"), None),
        ("GET", tenant.url("call-logs"), None),
    ]


def queued_call(sessions: sessionmaker[Session], tenant: Tenant, **fields: Any) -> str:
    with sessions.begin() as session:
        account = repository.get_account(session, sid=tenant.sid)
        assert account is not None
        return repository.create_call(
            session, account=account, service="outbound", to_number="+919876543210", **fields
        ).id


@pytest.mark.parametrize(
    "headers",
    [{}, {"api-key": "vpk_wrong"}, {"api-key": ""}],
    ids=["no key", "wrong key", "empty key"],
)
async def test_every_route_needs_the_accounts_key(
    client: httpx.AsyncClient,
    acme: Tenant,
    sessions: sessionmaker[Session],
    headers: dict[str, str],
) -> None:
    call_id = queued_call(sessions, acme)
    for method, url, fields in requests_of(acme, call_id):
        response = await client.request(method, url, json=fields, headers=headers)
        assert response.status_code == 401, (method, url, response.text)
        assert error_of(response)["code"] == "unauthorized"
    assert stored_calls(sessions) == 1
    assert load_call(sessions, call_id).cancel_requested_at is None


async def test_a_key_opens_only_its_own_account(
    client: httpx.AsyncClient, acme: Tenant, globex: Tenant, sessions: sessionmaker[Session]
) -> None:
    call_id = queued_call(sessions, acme)
    for sid in (globex.sid, "VP00000000000000000000"):
        other = Tenant(sid, acme.key, acme.bridge)
        for method, url, fields in requests_of(other, call_id):
            response = await client.request(method, url, json=fields, headers=other.headers)
            assert response.status_code == 401, (method, url, response.text)
    assert stored_calls(sessions) == 1


async def test_another_accounts_call_is_not_found_and_not_touched(
    client: httpx.AsyncClient,
    acme: Tenant,
    globex: Tenant,
    sessions: sessionmaker[Session],
    doorbell: Doorbell,
) -> None:
    theirs = queued_call(sessions, acme)
    unknown = "VC000000000000000000000000000000"

    for call_id in (theirs, unknown):
        read = await client.get(globex.url(f"calls/{call_id}"), headers=globex.headers)
        cancel = await client.post(globex.url(f"calls/{call_id}/cancel"), headers=globex.headers)
        assert read.status_code == cancel.status_code == 404
        assert error_of(read)["code"] == error_of(cancel)["code"] == "not_found"
    assert load_call(sessions, theirs).cancel_requested_at is None
    assert doorbell.cancelled == []


async def test_another_accounts_bridge_number_is_refused_like_an_unknown_one(
    client: httpx.AsyncClient, acme: Tenant, globex: Tenant, sessions: sessionmaker[Session]
) -> None:
    fields = {**VALID_C2C, "bridge": acme.bridge}

    response = await client.post(globex.url("click-to-call"), json=fields, headers=globex.headers)

    assert response.status_code == 400
    error = error_of(response)
    assert (error["field"], error["code"]) == ("bridge", "unknown_number")
    assert stored_calls(sessions) == 0


async def test_the_call_logs_never_show_another_accounts_calls(
    client: httpx.AsyncClient, acme: Tenant, globex: Tenant, sessions: sessionmaker[Session]
) -> None:
    mine = queued_call(sessions, globex)
    queued_call(sessions, acme)
    queued_call(sessions, acme, bridge=acme.bridge)

    everything = await client.get(globex.url("call-logs"), headers=globex.headers)
    by_their_bridge = await client.get(
        globex.url("call-logs"), params={"number": acme.bridge}, headers=globex.headers
    )

    assert everything.status_code == 200
    assert everything.json()["total"] == 1
    assert [call["id"] for call in everything.json()["calls"]] == [mine]
    assert by_their_bridge.json()["total"] == 0


# --- reading calls -------------------------------------------------------------------------


def completed_click_to_call(sessions: sessionmaker[Session], tenant: Tenant) -> str:
    start = datetime(2026, 1, 5, 10, 0, 0, tzinfo=UTC)
    with sessions.begin() as session:
        account = repository.get_account(session, sid=tenant.sid)
        assert account is not None
        call = repository.create_call(
            session,
            account=account,
            service="click2call",
            from_number="+919876543210",
            to_number="+919812345678",
            bridge=tenant.bridge,
            custom="ticket 9",
            now=start,
        )
        repository.record_leg(
            session,
            call=call,
            leg=1,
            number="+919876543210",
            status=Status.ANSWER.value,
            sip_code=200,
            start_time=start,
            answer_time=start + timedelta(seconds=4),
            end_time=start + timedelta(seconds=40),
        )
        repository.record_leg(
            session,
            call=call,
            leg=2,
            number="+919812345678",
            status=Status.NOANSWER.value,
            sip_code=480,
            sip_reason="Temporarily Unavailable",
            q850_cause=18,
            start_time=start + timedelta(seconds=5),
            end_time=start + timedelta(seconds=40),
        )
        repository.update_call(
            session,
            call=call,
            state="completed",
            status=Status.NOANSWER_LEG2.value,
            start_time=start,
            end_time=start + timedelta(seconds=40),
            duration=40,
        )
        return call.id


async def test_a_call_record_has_the_contract_keys_and_its_legs(
    client: httpx.AsyncClient, acme: Tenant, sessions: sessionmaker[Session]
) -> None:
    call_id = completed_click_to_call(sessions, acme)

    response = await client.get(acme.url(f"calls/{call_id}"), headers=acme.headers)

    assert response.status_code == 200
    record = response.json()
    assert set(record) == CONTRACT_KEYS
    assert record["id"] == call_id
    assert (record["service"], record["state"]) == ("click2call", "completed")
    assert record["status"] == Status.NOANSWER_LEG2.value
    assert (record["from"], record["to"], record["bridge"]) == (
        "+919876543210", "+919812345678", acme.bridge
    )  # fmt: skip
    assert (record["start_time"], record["end_time"]) == (
        "2026-01-05T10:00:00.000Z", "2026-01-05T10:00:40.000Z"
    )  # fmt: skip
    assert record["duration"] == 40
    assert [set(leg) for leg in record["legs"]] == [LEG_KEYS, LEG_KEYS]
    leg2 = record["legs"][1]
    assert (leg2["leg"], leg2["status"], leg2["sip_code"], leg2["q850_cause"]) == (
        2, Status.NOANSWER.value, 480, 18
    )  # fmt: skip


async def test_a_call_record_speaks_the_accounts_dialect(
    client: httpx.AsyncClient, acme: Tenant, sessions: sessionmaker[Session]
) -> None:
    call_id = completed_click_to_call(sessions, acme)
    with sessions.begin() as session:
        account = repository.get_account(session, sid=acme.sid)
        assert account is not None
        account.status_dialect = "kaleyra.io"

    record = (await client.get(acme.url(f"calls/{call_id}"), headers=acme.headers)).json()
    logs = (await client.get(acme.url("call-logs"), headers=acme.headers)).json()

    assert record["status"] == "NOANSWER_CHANNEL2"
    assert logs["calls"][0]["status"] == "NOANSWER_CHANNEL2"
    assert record["legs"][1]["status"] == Status.NOANSWER.value  # the same in both dialects


async def test_call_logs_filter_by_status_in_either_dialect_service_state_number_and_time(
    client: httpx.AsyncClient, acme: Tenant, sessions: sessionmaker[Session]
) -> None:
    done = completed_click_to_call(sessions, acme)  # created 2026-01-05
    waiting = queued_call(sessions, acme, bridge=acme.bridge)  # created now

    async def ids(**params: str) -> list[str]:
        response = await client.get(acme.url("call-logs"), params=params, headers=acme.headers)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["total"] == len(body["calls"])
        return [call["id"] for call in body["calls"]]

    assert await ids() == [waiting, done]
    assert await ids(status=Status.NOANSWER_LEG2.value) == [done]
    assert await ids(status="noanswer_channel2") == [done]
    assert await ids(service="outbound") == [waiting]
    assert await ids(state="completed") == [done]
    assert await ids(number="+919812345678") == [done]
    assert await ids(number="9812345678", prefix="91") == [done]
    assert await ids(start_time="2026-01-05", end_time="2026-01-05") == [done]
    assert await ids(start_time="2026/01/06") == [waiting]
    assert await ids(end_time="2026-01-05T10:00:00Z") == []


async def test_call_logs_page_by_page_or_offset_with_the_total(
    client: httpx.AsyncClient, acme: Tenant, sessions: sessionmaker[Session]
) -> None:
    created = [queued_call(sessions, acme) for _ in range(5)]
    newest_first = created[::-1]

    async def page(params: dict[str, str], headers: dict[str, str] | None = None) -> Any:
        response = await client.get(
            acme.url("call-logs"), params=params, headers={**acme.headers, **(headers or {})}
        )
        assert response.status_code == 200, response.text
        return response.json()

    second = await page({"limit": "2", "page": "2"})
    by_offset = await page({"limit": "2", "offset": "3"})
    by_header = await page({}, {"limit": "4"})

    assert (second["total"], second["limit"], second["offset"], second["page"]) == (5, 2, 2, 2)
    assert [c["id"] for c in second["calls"]] == newest_first[2:4]
    assert [c["id"] for c in by_offset["calls"]] == newest_first[3:5]
    assert (by_header["limit"], len(by_header["calls"])) == (4, 4)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"status": "RINGING"}, "status"),
        ({"service": "fax"}, "service"),
        ({"state": "done"}, "state"),
        ({"number": "9812345678"}, "number"),
        ({"start_time": "yesterday"}, "start_time"),
        ({"limit": "0"}, "limit"),
        ({"limit": "1001"}, "limit"),
        ({"page": "2", "offset": "0"}, "page"),
    ],
)
async def test_bad_call_log_filters_are_a_400_naming_them(
    client: httpx.AsyncClient, acme: Tenant, params: dict[str, str], field: str
) -> None:
    response = await client.get(acme.url("call-logs"), params=params, headers=acme.headers)

    assert response.status_code == 400, response.text
    assert error_of(response)["field"] == field


# --- cancel --------------------------------------------------------------------------------


async def test_cancel_marks_a_queued_call_and_rings_the_engine(
    client: httpx.AsyncClient,
    acme: Tenant,
    sessions: sessionmaker[Session],
    doorbell: Doorbell,
) -> None:
    call_id = queued_call(sessions, acme)
    before = utcnow()

    response = await client.post(acme.url(f"calls/{call_id}/cancel"), headers=acme.headers)

    assert response.status_code == 202, response.text
    assert set(response.json()) == CONTRACT_KEYS
    assert response.json()["id"] == call_id
    asked = load_call(sessions, call_id).cancel_requested_at
    assert asked is not None and asked >= before - timedelta(seconds=1)
    assert doorbell.cancelled == [call_id]

    again = await client.post(acme.url(f"calls/{call_id}/cancel"), headers=acme.headers)

    assert again.status_code == 202
    assert load_call(sessions, call_id).cancel_requested_at == asked


async def test_cancelling_a_completed_call_is_a_409_and_changes_nothing(
    client: httpx.AsyncClient,
    acme: Tenant,
    sessions: sessionmaker[Session],
    doorbell: Doorbell,
) -> None:
    call_id = completed_click_to_call(sessions, acme)

    response = await client.post(acme.url(f"calls/{call_id}/cancel"), headers=acme.headers)

    assert response.status_code == 409
    assert error_of(response)["code"] == "conflict"
    assert load_call(sessions, call_id).cancel_requested_at is None
    assert doorbell.cancelled == []


# --- docs ----------------------------------------------------------------------------------


async def test_the_openapi_schema_shows_the_request_fields_for_json_and_forms(
    client: httpx.AsyncClient,
) -> None:
    schema = (await client.get("/openapi.json")).json()
    docs = await client.get("/docs")

    assert docs.status_code == 200
    c2c = schema["paths"]["/v1/{sid}/voice/click-to-call"]["post"]["requestBody"]["content"]
    assert set(c2c) == {"application/json", "application/x-www-form-urlencoded"}
    properties = c2c["application/json"]["schema"]["properties"]
    assert {"from", "to", "bridge", "prefix", "retry", "time", "timeout", "callback"} <= set(
        properties
    )
    assert properties["retry"]["maximum"] == 5
    record = schema["components"]["schemas"]["CallRecord"]["properties"]
    assert set(record) == CONTRACT_KEYS
    assert "/v1/" in schema["paths"]
