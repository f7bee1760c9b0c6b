"""The fast path answers the placing POSTs exactly as the FastAPI routes do.

Every request goes once to an app with the fast path and once to one without it (both on the
same store), and the two answers must be the same: status, body (call ids aside, which are
new each time) and headers. The fast app's FastAPI side is watched, so a request that
should have taken the fast path but fell through to FastAPI fails the test.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.orm import Session, sessionmaker
from starlette.types import ASGIApp, Receive, Scope, Send

from tests.api.conftest import Doorbell, Tenant, stored_calls
from voiceplane.api import fast_path, legacy, voice
from voiceplane.api.app import create_app
from voiceplane.api.fast_path import FastPath
from voiceplane.config import load_config

CALL_ID = re.compile(r"VC[0-9a-f]{32}")
JSON = {"content-type": "application/json"}
FORM = {"content-type": "application/x-www-form-urlencoded"}


@dataclass
class Watched:
    """An ASGI app that notes the path of every HTTP request it gets."""

    app: ASGIApp
    paths: list[str] = field(default_factory=list)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.paths.append(f"{scope['method']} {scope['path']}")
        await self.app(scope, receive, send)


@dataclass(frozen=True)
class Apps:
    """The app with the fast path (its FastAPI side watched) and the one without."""

    fast: httpx.AsyncClient
    plain: httpx.AsyncClient
    behind: Watched  # what reached FastAPI in the fast app


def build(
    sessions: sessionmaker[Session], doorbell: Any, data_dir: Path, *, fast_path: bool
) -> FastAPI:
    config = load_config(None, {"VOICEPLANE_DATA_DIR": str(data_dir)})
    return create_app(
        config, ready=lambda: True, sessions=sessions, commands=doorbell, fast_path=fast_path
    )


def client_of(app: FastAPI, *, raise_app_exceptions: bool = False) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=raise_app_exceptions)
    return httpx.AsyncClient(transport=transport, base_url="http://voiceplane.test")


def watch(app: FastAPI) -> Watched:
    """Put a :class:`Watched` between ``app``'s fast path and its FastAPI side."""
    front = getattr(app, "front", None)
    assert isinstance(front, FastPath), "create_app put no fast path in front"
    watched = Watched(front.app)
    front.app = watched
    return watched


@pytest.fixture
async def apps(
    sessions: sessionmaker[Session], doorbell: Doorbell, data_dir: Path
) -> AsyncIterator[Apps]:
    fast = build(sessions, doorbell, data_dir, fast_path=True)
    plain = build(sessions, doorbell, data_dir, fast_path=False)
    assert getattr(plain, "front", None) is None
    behind = watch(fast)
    async with client_of(fast) as fast_client, client_of(plain) as plain_client:
        yield Apps(fast_client, plain_client, behind)


@dataclass(frozen=True)
class Answer:
    status: int
    headers: list[tuple[str, str]]
    body: str


def answer_of(response: httpx.Response) -> Answer:
    """The response with call ids blanked out (each request makes a new one)."""
    return Answer(
        response.status_code,
        [(name, CALL_ID.sub("VC-id", value)) for name, value in response.headers.multi_items()],
        CALL_ID.sub("VC-id", response.text),
    )


async def same_answer(
    apps: Apps,
    method: str,
    url: str,
    *,
    content: bytes | None = None,
    headers: dict[str, str] | None = None,
    fast: bool = True,
) -> Answer:
    """Send the request to both apps; assert equal answers and that the fast app took its
    fast path (``fast``) or left the request to FastAPI; the answer."""
    seen = len(apps.behind.paths)
    through_fast = await apps.fast.request(method, url, content=content, headers=headers)
    through_plain = await apps.plain.request(method, url, content=content, headers=headers)
    reached_fastapi = len(apps.behind.paths) > seen
    assert reached_fastapi is not fast, apps.behind.paths[seen:]
    answer = answer_of(through_fast)
    assert answer == answer_of(through_plain)
    return answer


def as_json(fields: dict[str, Any]) -> bytes:
    return json.dumps(fields).encode()


def as_form(fields: dict[str, str] | list[tuple[str, str]]) -> bytes:
    return urlencode(fields).encode()


def keyed(tenant: Tenant, extra: dict[str, str]) -> dict[str, str]:
    return {"api-key": tenant.key, **extra}


C2C = {"from": "+919876543210", "to": "+919812345678"}
OUTBOUND = {"to": "+919876543210", "target": "Hello from voiceplane"}


# --- the placing POSTs: accepted ------------------------------------------------------------


@pytest.mark.parametrize(("path", "order"), [("click-to-call", C2C), ("outbound", OUTBOUND)])
async def test_an_accepted_call_is_the_same_202_stored_and_rung(
    apps: Apps,
    acme: Tenant,
    doorbell: Doorbell,
    sessions: sessionmaker[Session],
    path: str,
    order: dict[str, str],
) -> None:
    fields = {**order, "bridge": acme.bridge}
    url = acme.url(path)

    as_json_answer = await same_answer(
        apps, "POST", url, content=as_json(fields), headers=keyed(acme, JSON)
    )
    as_form_answer = await same_answer(
        apps, "POST", url, content=as_form(fields), headers=keyed(acme, FORM)
    )
    with_query = await same_answer(
        apps, "POST", url + "?ignored=1", content=as_json(fields), headers=keyed(acme, JSON)
    )

    for answer in (as_json_answer, as_form_answer, with_query):
        assert answer.status == 202
        assert json.loads(answer.body) == {"id": "VC-id", "state": "queued"}
        assert ("content-type", "application/json") in answer.headers
    assert len(doorbell.queued) == 6 == stored_calls(sessions)


async def test_a_multipart_form_is_read_the_same(apps: Apps, acme: Tenant) -> None:
    content, headers = multipart({**C2C, "bridge": acme.bridge}, acme)

    answer = await same_answer(
        apps, "POST", acme.url("click-to-call"), content=content, headers=headers
    )

    assert answer.status == 202


# --- the placing POSTs: refused ---------------------------------------------------------------


def refusals(tenant: Tenant, other: Tenant) -> dict[str, tuple[bytes, dict[str, str]]]:
    """What is wrong: (body, headers) of a click-to-call that must be refused."""
    good = {**C2C, "bridge": tenant.bridge}
    return {
        "bad JSON": (b'{"from": "+9198', keyed(tenant, JSON)),
        "a JSON list": (b"[1, 2]", keyed(tenant, JSON)),
        "no body": (b"", keyed(tenant, JSON)),
        "missing to": (as_json({**good, "to": None}), keyed(tenant, JSON)),
        "no to": (as_json({"from": C2C["from"], "bridge": tenant.bridge}), keyed(tenant, JSON)),
        "not a number": (as_json({**good, "to": "call me"}), keyed(tenant, JSON)),
        "unknown field": (as_json({**good, "colour": "blue"}), keyed(tenant, JSON)),
        "retry too high": (as_json({**good, "retry": 99}), keyed(tenant, JSON)),
        "retry not a number": (as_json({**good, "retry": "x"}), keyed(tenant, JSON)),
        "too long": (as_json({**good, "custom": "x" * 100_000}), keyed(tenant, JSON)),
        "a field twice": (as_form([*good.items(), ("to", "+919812345679")]), keyed(tenant, FORM)),
        "other's bridge": (as_json({**good, "bridge": other.bridge}), keyed(tenant, JSON)),
        "unknown flow": (as_json({**good, "to": "ivr:999"}), keyed(tenant, JSON)),
        "wrong key": (as_json(good), {"api-key": "not-a-key", **JSON}),
        "other's key": (as_json(good), keyed(other, JSON)),
        "no key": (as_json(good), JSON),
        "text/plain": (b"from=1", keyed(tenant, {"content-type": "text/plain"})),
        "no content type": (as_json(good), {"api-key": tenant.key}),
        "bad multipart": (b"--x\r\nbroken", keyed(tenant, {"content-type": "multipart/form-data"})),
        "multipart part over 1 MB": multipart({**good, "custom": "x" * 1_100_000}, tenant),
    }  # fmt: skip


def multipart(fields: dict[str, str], tenant: Tenant) -> tuple[bytes, dict[str, str]]:
    """``fields`` as a multipart/form-data body, and its headers."""
    boundary = "vp-boundary"
    parts = "".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        for name, value in fields.items()
    )
    content_type = f"multipart/form-data; boundary={boundary}"
    return f"{parts}--{boundary}--\r\n".encode(), keyed(tenant, {"content-type": content_type})


async def test_a_refused_click_to_call_is_the_same_error_and_stores_nothing(
    apps: Apps,
    acme: Tenant,
    globex: Tenant,
    doorbell: Doorbell,
    sessions: sessionmaker[Session],
) -> None:
    statuses = {}
    for wrong, (content, headers) in refusals(acme, globex).items():
        answer = await same_answer(
            apps, "POST", acme.url("click-to-call"), content=content, headers=headers
        )
        assert set(json.loads(answer.body)) == {"error"}, wrong
        statuses[wrong] = answer.status

    assert statuses == {
        **dict.fromkeys(refusals(acme, globex), 400),
        "wrong key": 401, "other's key": 401, "no key": 401,
        "text/plain": 415, "no content type": 415,
    }  # fmt: skip
    assert stored_calls(sessions) == 0 and doorbell.queued == []


async def test_refused_outbound_calls_are_the_same_errors(
    apps: Apps, acme: Tenant, globex: Tenant, sessions: sessionmaker[Session]
) -> None:
    url = acme.url("outbound")
    good = {**OUTBOUND, "bridge": acme.bridge}
    cases = [
        (as_json({**good, "target": "flow:999"}), keyed(acme, JSON), 400),
        (as_json({**good, "bridge": globex.bridge}), keyed(acme, JSON), 400),
        (as_json({**good, "timeout": 0}), keyed(acme, JSON), 400),
        (b"{", keyed(acme, JSON), 400),
        (as_json(good), keyed(globex, JSON), 401),
        (b"<xml/>", keyed(acme, {"content-type": "application/xml"}), 415),
    ]

    for content, headers, status in cases:
        answer = await same_answer(apps, "POST", url, content=content, headers=headers)
        assert answer.status == status, answer

    assert stored_calls(sessions) == 0


async def test_an_unknown_account_is_answered_the_same(apps: Apps, acme: Tenant) -> None:
    fields = {**C2C, "bridge": acme.bridge}

    answer = await same_answer(
        apps, "POST", "/v1/ACnobody/voice/click-to-call", content=as_json(fields),
        headers=keyed(acme, JSON),
    )  # fmt: skip

    assert answer.status == 401


class BrokenEngine:
    """A doorbell that fails: the request fails after its call was stored."""

    def call_queued(self, call_id: str) -> None:
        raise RuntimeError("the engine is gone")

    def cancel_requested(self, call_id: str) -> None:
        raise RuntimeError("the engine is gone")


async def test_an_unexpected_failure_is_the_same_500_and_reaches_the_server(
    sessions: sessionmaker[Session], data_dir: Path, acme: Tenant
) -> None:
    content = as_json({**C2C, "bridge": acme.bridge})
    answers = []
    for fast in (True, False):
        app = build(sessions, BrokenEngine(), data_dir, fast_path=fast)
        async with client_of(app) as client:
            response = await client.post(
                acme.url("click-to-call"), content=content, headers=keyed(acme, JSON)
            )
        answers.append(answer_of(response))
        # As Starlette's ServerErrorMiddleware: after the 500, the error goes on to be logged.
        async with client_of(app, raise_app_exceptions=True) as client:
            with pytest.raises(RuntimeError, match="the engine is gone"):
                await client.post(
                    acme.url("click-to-call"), content=content, headers=keyed(acme, JSON)
                )

    assert answers[0] == answers[1]
    assert answers[0].status == 500
    assert json.loads(answers[0].body)["error"]["code"] == "internal_error"


# --- the legacy API ---------------------------------------------------------------------------


def legacy_c2c(tenant: Tenant, **extra: str) -> dict[str, str]:
    return {
        "method": "dial.click2call", "format": "json", "api_key": tenant.key,
        "caller": "9876543210", "receiver": "9812345678", "prefix": "91", **extra,
    }  # fmt: skip


@pytest.mark.parametrize("path", legacy.PATHS)
async def test_the_legacy_api_is_answered_the_same_on_every_path(
    apps: Apps, acme: Tenant, path: str
) -> None:
    params = legacy_c2c(acme)

    by_get = await same_answer(apps, "GET", f"{path}?{urlencode(params)}")
    by_post = await same_answer(apps, "POST", path, content=as_form(params), headers=FORM)

    assert by_get.status == by_post.status == 200


async def test_legacy_calls_refusals_and_formats_are_answered_the_same(
    apps: Apps, acme: Tenant, globex: Tenant
) -> None:
    voice_call = {
        "method": "voice.call", "api_key": acme.key, "numbers": "9876543210,9876543211",
        "message": "hello", "prefix": "91",
    }  # fmt: skip
    cases: list[tuple[dict[str, str], int]] = [
        (voice_call, 200),
        ({**voice_call, "format": "xml"}, 200),
        (legacy_c2c(acme, format="text"), 200),
        (legacy_c2c(acme, api_key="wrong"), 401),
        (legacy_c2c(acme, caller_id=globex.bridge), 400),
        (legacy_c2c(acme, method="dial.nothing"), 400),
        (legacy_c2c(acme, colour="blue", format="xml"), 400),
        ({"method": "dial.c2cstatus", "format": "json", "api_key": acme.key}, 200),
    ]

    for params, status in cases:
        query = await same_answer(apps, "GET", f"/v1/?{urlencode(params)}")
        form = await same_answer(apps, "POST", "/v1/", content=as_form(params), headers=FORM)
        posted_json = await same_answer(
            apps, "POST", "/v1/", content=as_json(params), headers=JSON
        )
        assert query.status == form.status == posted_json.status == status, params

    both = await same_answer(
        apps, "POST", f"/v1/?{urlencode({'format': 'json'})}",
        content=as_form(legacy_c2c(acme)), headers=FORM,
    )  # fmt: skip
    assert both.status == 400  # format given in the query and the body


# --- everything else is FastAPI's -------------------------------------------------------------


async def test_other_requests_go_to_fastapi_and_are_answered_the_same(
    apps: Apps, acme: Tenant
) -> None:
    content = as_json({**C2C, "bridge": acme.bridge})
    headers = keyed(acme, JSON)
    others = [
        ("GET", acme.url("click-to-call"), None),  # 405
        ("PUT", acme.url("outbound"), content),  # 405
        ("POST", acme.url("click-to-call/"), content),  # trailing slash
        ("POST", acme.url("calls"), content),
        ("POST", f"/v1/{acme.sid}/voice/x/click-to-call", content),
        ("POST", "/v1//voice/click-to-call", content),
        ("POST", acme.url("calls/VCnone/cancel"), None),
        ("GET", acme.url("call-logs"), None),
        ("PUT", "/v1/", None),
        ("GET", "/healthz", None),
        ("GET", "/openapi.json", None),
    ]

    for method, url, body in others:
        await same_answer(apps, method, url, content=body, headers=headers, fast=False)

    assert len(apps.behind.paths) == len(others)


def test_only_the_placing_requests_are_routed_to_the_fast_path() -> None:
    for segment in ("click-to-call", "outbound"):
        path = f"/v1/AC1/voice/{segment}"
        assert fast_path.route("POST", path) == (voice.PLACING[segment], "AC1")
    for method, path in [
        ("GET", "/v1/AC1/voice/click-to-call"),
        ("POST", "/v1/AC1/voice/click-to-call/"),
        ("POST", "/v1//voice/outbound"),
        ("POST", "/v1/AC1/voice/calls"),
        ("POST", "/v2/AC1/voice/outbound"),
        ("POST", "/v1/AC1/voices/outbound"),
        ("HEAD", "/v1/"),
        ("PUT", "/v1/"),
        ("POST", "/v1/admin/dnd"),
    ]:
        assert fast_path.route(method, path) is None, (method, path)
    for path in legacy.PATHS:
        assert fast_path.route("GET", path) is not None
        assert fast_path.route("POST", path) is not None


def test_without_a_store_there_is_no_fast_path(data_dir: Path) -> None:
    app = create_app(load_config(None, {"VOICEPLANE_DATA_DIR": str(data_dir)}), ready=lambda: True)

    assert getattr(app, "front", None) is None


async def test_a_request_under_a_root_path_is_left_to_fastapi(
    sessions: sessionmaker[Session], doorbell: Doorbell, data_dir: Path, acme: Tenant
) -> None:
    app = build(sessions, doorbell, data_dir, fast_path=True)
    behind = watch(app)
    transport = httpx.ASGITransport(app=app, root_path="/behind/a/proxy")
    async with httpx.AsyncClient(transport=transport, base_url="http://voiceplane.test") as c:
        await c.post(
            acme.url("click-to-call"), content=as_json({**C2C, "bridge": acme.bridge}),
            headers=keyed(acme, JSON),
        )  # fmt: skip

    assert behind.paths == [f"POST {acme.url('click-to-call')}"]
