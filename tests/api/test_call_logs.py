"""GET /v1/{sid}/voice/call-logs: the custom filter, sorting, cursor paging and the CSV export,
against a real store (SQLite and PostgreSQL)."""

from __future__ import annotations

import base64
import csv
import io
import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy.orm import Session, sessionmaker

from tests.api.conftest import Tenant, error_of, stored_calls
from voiceplane.api import csv_export
from voiceplane.calls.status import Status
from voiceplane.store import repository

T0 = datetime(2026, 2, 1, 9, 0, 0, 250_000, tzinfo=UTC)
SORTS = ["created_at", "-created_at", "duration", "-duration", "billsec", "-billsec"]


def store_calls(
    sessions: sessionmaker[Session],
    tenant: Tenant,
    shapes: Sequence[tuple[float, int, int]],
    **fields: Any,
) -> list[dict[str, Any]]:
    """Calls of ``tenant`` created at T0 + seconds, with a duration and billsec each."""
    with sessions.begin() as session:
        account = repository.get_account(session, sid=tenant.sid)
        assert account is not None
        rows = []
        for seconds, duration, billsec in shapes:
            row = repository.call_row(
                account_id=account.id, service="outbound", now=T0 + timedelta(seconds=seconds),
                to_number="+919876543210", bridge=tenant.bridge, **fields,
            )  # fmt: skip
            row.update(duration=duration, billsec=billsec)
            rows.append(row)
        repository.insert_calls(session, rows)
    return rows


# Ties on every sort key, so each sort leans on the id too.
SHAPES = [
    (0, 30, 10), (5, 30, 0), (5, 12, 12), (9, 0, 0), (9, 45, 10), (20, 12, 3), (20, 30, 3),
    (31, 7, 7), (31, 30, 10), (40, 0, 0), (41, 12, 12),
]  # fmt: skip


def expected_order(rows: list[dict[str, Any]], sort: str) -> list[str]:
    name = sort.removeprefix("-")
    ordered = sorted(rows, key=lambda row: (row[name], row["id"]))
    if sort.startswith("-"):
        ordered.reverse()
    return [row["id"] for row in ordered]


async def get_logs(client: httpx.AsyncClient, tenant: Tenant, **params: str) -> dict[str, Any]:
    response = await client.get(tenant.url("call-logs"), params=params, headers=tenant.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def cursor_walk(
    client: httpx.AsyncClient, tenant: Tenant, **params: str
) -> tuple[list[str], list[dict[str, Any]]]:
    """Every call id the cursor pages give, and the pages."""
    pages = [await get_logs(client, tenant, **params)]
    while pages[-1]["next_cursor"] is not None:
        following = {**params, "cursor": pages[-1]["next_cursor"]}
        pages.append(await get_logs(client, tenant, **following))
        assert len(pages) < 100
    return [call["id"] for page in pages for call in page["calls"]], pages


# --- filter and sort -------------------------------------------------------------------------


async def test_custom_filters_exactly_and_combines_with_the_others(
    client: httpx.AsyncClient, acme: Tenant, globex: Tenant, sessions: sessionmaker[Session]
) -> None:
    [ticket] = store_calls(sessions, acme, [(0, 1, 1)], custom="ticket 9")
    store_calls(sessions, acme, [(1, 1, 1)], custom="ticket 90")
    store_calls(sessions, acme, [(2, 1, 1)], custom="TICKET 9")
    store_calls(sessions, acme, [(3, 1, 1)])
    store_calls(sessions, globex, [(4, 1, 1)], custom="ticket 9")

    found = await get_logs(client, acme, custom="ticket 9")
    with_service = await get_logs(client, acme, custom="ticket 9", service="click2call")
    with_time = await get_logs(client, acme, custom="ticket 9", start_time=T0.isoformat())

    assert [call["id"] for call in found["calls"]] == [ticket["id"]]
    assert found["calls"][0]["custom"] == "ticket 9"
    assert found["total"] == 1
    assert with_service["total"] == 0
    assert with_time["total"] == 1


@pytest.mark.parametrize("sort", SORTS)
async def test_each_sort_orders_by_its_key_with_ties_by_id(
    client: httpx.AsyncClient, acme: Tenant, sessions: sessionmaker[Session], sort: str
) -> None:
    rows = store_calls(sessions, acme, SHAPES)

    body = await get_logs(client, acme, sort=sort)

    assert [call["id"] for call in body["calls"]] == expected_order(rows, sort)
    assert body["total"] == len(SHAPES)


async def test_the_default_sort_is_newest_first(
    client: httpx.AsyncClient, acme: Tenant, sessions: sessionmaker[Session]
) -> None:
    rows = store_calls(sessions, acme, SHAPES)

    body = await get_logs(client, acme)

    assert [call["id"] for call in body["calls"]] == expected_order(rows, "-created_at")


# --- cursor paging ---------------------------------------------------------------------------


@pytest.mark.parametrize("sort", SORTS)
async def test_a_cursor_walk_over_every_page_equals_the_offset_walk(
    client: httpx.AsyncClient, acme: Tenant, sessions: sessionmaker[Session], sort: str
) -> None:
    rows = store_calls(sessions, acme, SHAPES)

    by_cursor, pages = await cursor_walk(client, acme, sort=sort, limit="3")
    by_offset = [
        call["id"]
        for offset in range(0, len(SHAPES), 3)
        for call in (await get_logs(client, acme, sort=sort, limit="3", offset=str(offset)))[
            "calls"
        ]
    ]

    assert by_cursor == by_offset == expected_order(rows, sort)
    assert [len(page["calls"]) for page in pages] == [3, 3, 3, 2]
    assert all(page["total"] == len(SHAPES) for page in pages)
    assert (pages[0]["offset"], pages[0]["page"]) == (0, 1)
    assert all((page["offset"], page["page"]) == (None, None) for page in pages[1:])
    assert pages[-1]["next_cursor"] is None


async def test_offset_pages_also_give_a_cursor_and_none_on_the_last_page(
    client: httpx.AsyncClient, acme: Tenant, sessions: sessionmaker[Session]
) -> None:
    rows = store_calls(sessions, acme, SHAPES)
    newest_first = expected_order(rows, "-created_at")

    second = await get_logs(client, acme, limit="4", page="2")
    after_second = await get_logs(client, acme, limit="4", cursor=second["next_cursor"])
    last = await get_logs(client, acme, limit="4", page="3")
    exact = await get_logs(client, acme, limit=str(len(SHAPES)))

    assert [call["id"] for call in after_second["calls"]] == newest_first[8:]
    assert last["next_cursor"] is None
    assert exact["next_cursor"] is None


async def test_a_cursor_stays_right_while_new_calls_arrive(
    client: httpx.AsyncClient, acme: Tenant, sessions: sessionmaker[Session]
) -> None:
    rows = store_calls(sessions, acme, SHAPES)
    newest_first = expected_order(rows, "-created_at")
    by_duration = expected_order(rows, "duration")

    first = await get_logs(client, acme, limit="4")
    first_by_duration = await get_logs(client, acme, limit="4", sort="duration")
    # Newer calls (on top of the newest-first list), and durations inside the page already
    # read and beyond it.
    store_calls(sessions, acme, [(100, 0, 0), (101, 7, 1), (102, 31, 2), (103, 99, 3)])
    rest, _ = await cursor_walk(client, acme, limit="4", cursor=first["next_cursor"])
    rest_by_duration, _ = await cursor_walk(
        client, acme, limit="4", sort="duration", cursor=first_by_duration["next_cursor"]
    )

    seen = [call["id"] for call in first["calls"]] + rest
    assert seen == newest_first  # the new calls came before the cursor: none shows, none moves
    seen_by_duration = [call["id"] for call in first_by_duration["calls"]] + rest_by_duration
    originals = [call_id for call_id in seen_by_duration if call_id in by_duration]
    assert originals == by_duration  # every earlier call once, in order
    assert len(seen_by_duration) == len(by_duration) + 2  # the 31 s and 99 s calls, beyond it


def forged(cursor: str, **changes: Any) -> str:
    raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    payload = {**json.loads(raw), **changes}
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()


async def test_bad_sort_and_cursor_are_400s_naming_them_and_change_nothing(
    client: httpx.AsyncClient, acme: Tenant, sessions: sessionmaker[Session]
) -> None:
    store_calls(sessions, acme, SHAPES)
    cursor = (await get_logs(client, acme, limit="2"))["next_cursor"]
    by_duration = (await get_logs(client, acme, limit="2", sort="duration"))["next_cursor"]
    assert cursor is not None and by_duration is not None
    cases: list[tuple[dict[str, str], str]] = [
        ({"sort": "to"}, "sort"),
        ({"sort": "+duration"}, "sort"),
        ({"sort": "created_at,id"}, "sort"),
        ({"cursor": "garbage!"}, "cursor"),
        ({"cursor": "e30"}, "cursor"),  # {}
        ({"cursor": cursor[:-4]}, "cursor"),
        ({"cursor": forged(cursor, i="VC0")}, "cursor"),  # edited, hash not matching
        ({"cursor": forged(cursor, k=5)}, "cursor"),
        ({"cursor": cursor, "sort": "duration"}, "cursor"),  # made for another sort
        ({"cursor": by_duration}, "cursor"),
        ({"cursor": cursor, "page": "2"}, "cursor"),
        ({"cursor": cursor, "offset": "2"}, "cursor"),
        ({"custom": "x" * 256}, "custom"),
        ({"format": "xml"}, "format"),
    ]
    for params, field in cases:
        response = await client.get(acme.url("call-logs"), params=params, headers=acme.headers)
        assert response.status_code == 400, (params, response.text)
        assert error_of(response)["field"] == field, params
    assert stored_calls(sessions) == len(SHAPES)
    # The good cursor still works after all that.
    assert len((await get_logs(client, acme, limit="2", cursor=cursor))["calls"]) == 2


# --- CSV -------------------------------------------------------------------------------------


def parse_csv(response: httpx.Response) -> list[dict[str, str]]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    assert response.headers["content-disposition"] == 'attachment; filename="call-logs.csv"'
    reader = csv.DictReader(io.StringIO(response.text, newline=""))
    assert reader.fieldnames == list(csv_export.COLUMNS)
    return list(reader)


def completed_click_to_call(sessions: sessionmaker[Session], tenant: Tenant) -> str:
    start = T0 + timedelta(hours=1)
    with sessions.begin() as session:
        account = repository.get_account(session, sid=tenant.sid)
        assert account is not None
        account.status_dialect = "kaleyra.io"
        call = repository.create_call(
            session, account=account, service="click2call", from_number="+919876543210",
            to_number="+919812345678", bridge=tenant.bridge, custom="ticket, \"9\"\nline 2",
            now=start,
        )  # fmt: skip
        repository.record_leg(
            session, call=call, leg=1, number="+919876543210", status=Status.ANSWER.value,
            sip_code=200, start_time=start,
        )  # fmt: skip
        repository.record_leg(
            session, call=call, leg=2, number="+919812345678", status=Status.NOANSWER.value,
            sip_code=480, start_time=start,
        )  # fmt: skip
        repository.update_call(
            session, call=call, state="completed", status=Status.NOANSWER_LEG2.value,
            reason="no answer", start_time=start, answer_time=start + timedelta(seconds=4),
            end_time=start + timedelta(seconds=40), duration=40, billsec=36,
        )  # fmt: skip
        return call.id


async def test_csv_has_a_header_and_a_row_per_call_in_the_accounts_words(
    client: httpx.AsyncClient, acme: Tenant, globex: Tenant, sessions: sessionmaker[Session]
) -> None:
    call_id = completed_click_to_call(sessions, acme)
    [waiting] = store_calls(sessions, acme, [(0, 0, 0)])
    store_calls(sessions, globex, [(1, 0, 0)])

    response = await client.get(
        acme.url("call-logs"), params={"format": "csv"}, headers=acme.headers
    )
    rows = parse_csv(response)

    assert [row["id"] for row in rows] == [call_id, waiting["id"]]
    done = rows[0]
    assert done == {
        "id": call_id, "service": "click2call", "state": "completed",
        "status": "NOANSWER_CHANNEL2", "from": "+919876543210", "to": "+919812345678",
        "bridge": acme.bridge, "custom": "ticket, \"9\"\nline 2", "reason": "no answer",
        "rule": "", "created_at": "2026-02-01T10:00:00.250Z",
        "start_time": "2026-02-01T10:00:00.250Z", "answer_time": "2026-02-01T10:00:04.250Z",
        "end_time": "2026-02-01T10:00:40.250Z", "duration": "40", "billsec": "36",
        "leg1_status": Status.ANSWER.value, "leg2_status": Status.NOANSWER.value,
        "leg1_sip_code": "200", "leg2_sip_code": "480",
    }  # fmt: skip
    assert (rows[1]["status"], rows[1]["leg1_status"], rows[1]["leg2_sip_code"]) == ("", "", "")


async def test_csv_follows_the_filters_and_the_sort_and_the_accept_header(
    client: httpx.AsyncClient, acme: Tenant, sessions: sessionmaker[Session]
) -> None:
    rows = store_calls(sessions, acme, SHAPES)
    store_calls(sessions, acme, [(50, 1, 1)], custom="other")

    by_accept = await client.get(
        acme.url("call-logs"),
        params={"sort": "billsec", "start_time": T0.isoformat(), "limit": "2"},
        headers={**acme.headers, "accept": "text/csv"},
    )
    by_format = await client.get(
        acme.url("call-logs"), params={"custom": "other", "format": "csv"}, headers=acme.headers
    )
    json_anyway = await client.get(
        acme.url("call-logs"),
        params={"format": "json"},
        headers={**acme.headers, "accept": "text/csv"},
    )

    ids = [row["id"] for row in parse_csv(by_accept) if row["custom"] != "other"]
    assert ids == expected_order(rows, "billsec")  # every call: limit does not apply
    assert [row["custom"] for row in parse_csv(by_format)] == ["other"]
    assert json_anyway.headers["content-type"].startswith("application/json")


@pytest.mark.parametrize(
    ("text", "written"),
    [
        ("=1+2", "'=1+2"),
        ("+SUM(A1:A2)", "'+SUM(A1:A2)"),
        ("-2+3", "'-2+3"),
        ("@cmd", "'@cmd"),
        ("\t=1", "'\t=1"),
        ("ticket =1", "ticket =1"),
        ("'quoted", "'quoted"),
    ],
)
async def test_csv_defuses_formulas_in_custom_and_reason(
    client: httpx.AsyncClient,
    acme: Tenant,
    sessions: sessionmaker[Session],
    text: str,
    written: str,
) -> None:
    store_calls(sessions, acme, [(0, 0, 0)], custom=text, reason=text)

    csv_rows = parse_csv(
        await client.get(acme.url("call-logs"), params={"format": "csv"}, headers=acme.headers)
    )
    record = (await get_logs(client, acme))["calls"][0]

    assert (csv_rows[0]["custom"], csv_rows[0]["reason"]) == (written, written)
    assert (record["custom"], record["reason"]) == (text, text)  # the JSON is as stored
    assert csv_rows[0]["to"] == "+919876543210"  # numbers are not touched


async def test_a_big_csv_export_has_every_call_once_in_order(
    client: httpx.AsyncClient, acme: Tenant, sessions: sessionmaker[Session]
) -> None:
    count = 1200  # more than two batches of csv_export.BATCH
    rows = store_calls(sessions, acme, [(i * 0.5, i % 7, i % 3) for i in range(count)])

    newest = parse_csv(
        await client.get(acme.url("call-logs"), params={"format": "csv"}, headers=acme.headers)
    )
    by_duration = parse_csv(
        await client.get(
            acme.url("call-logs"), params={"format": "csv", "sort": "-duration"},
            headers=acme.headers,
        )  # fmt: skip
    )

    assert count > 2 * csv_export.BATCH
    assert [row["id"] for row in newest] == expected_order(rows, "-created_at")
    assert [row["id"] for row in by_duration] == expected_order(rows, "-duration")


async def test_csv_refuses_paging_and_needs_the_key(
    client: httpx.AsyncClient, acme: Tenant, sessions: sessionmaker[Session]
) -> None:
    store_calls(sessions, acme, SHAPES)
    cursor = (await get_logs(client, acme, limit="2"))["next_cursor"]

    for name, value in (("page", "2"), ("offset", "1"), ("cursor", cursor)):
        response = await client.get(
            acme.url("call-logs"), params={"format": "csv", name: value}, headers=acme.headers
        )
        assert response.status_code == 400
        assert error_of(response)["field"] == name
    unauthorized = await client.get(acme.url("call-logs"), params={"format": "csv"})
    assert unauthorized.status_code == 401
    assert error_of(unauthorized)["code"] == "unauthorized"


@pytest.mark.parametrize(
    ("accept", "csv_wanted"),
    [
        ("text/csv", True),
        ("text/csv; charset=utf-8", True),
        ("application/json;q=0.5, text/csv", True),
        ("text/csv, */*;q=0.8", True),
        ("*/*", False),
        ("application/json", False),
        ("application/json, text/csv", False),  # a tie: JSON, the default
        ("application/json, text/csv;q=0.1", False),
        ("text/csv;q=0", False),
        ("text/csv;q=nonsense", False),
    ],
)
async def test_the_accept_header_chooses_csv_only_when_it_prefers_it(
    client: httpx.AsyncClient, acme: Tenant, accept: str, csv_wanted: bool
) -> None:
    response = await client.get(
        acme.url("call-logs"), headers={**acme.headers, "accept": accept}
    )

    assert response.status_code == 200
    is_csv = response.headers["content-type"].startswith("text/csv")
    assert is_csv == csv_wanted
