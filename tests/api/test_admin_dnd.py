"""The DND registry's admin API: the admin key, imports as request bodies, lookups, stats."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from voiceplane.api.app import create_app
from voiceplane.config import load_config
from voiceplane.policy import dnd_file
from voiceplane.policy.dnd import DndRegistry

ADMIN_KEY = "admin-secret-0123456789"
ADMIN = {"api-key": ADMIN_KEY}


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def registry(data_dir: Path) -> DndRegistry:
    # A long interval: only an explicit refresh (the API's, after an import) switches it.
    return DndRegistry.in_data_dir(data_dir, refresh_interval_s=3600)


def make_app(data_dir: Path, registry: DndRegistry | None, admin_key: str | None) -> FastAPI:
    environ = {"VOICEPLANE_DATA_DIR": str(data_dir)}
    if admin_key is not None:
        environ["VOICEPLANE_API_ADMIN_KEY"] = admin_key
    return create_app(load_config(None, environ), ready=lambda: True, dnd=registry)


async def client_for(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


@pytest.fixture
async def client(data_dir: Path, registry: DndRegistry) -> AsyncIterator[httpx.AsyncClient]:
    async with await client_for(make_app(data_dir, registry, ADMIN_KEY)) as client:
        yield client


async def test_an_import_answers_with_counts_and_the_live_registry_sees_it(
    client: httpx.AsyncClient, registry: DndRegistry
) -> None:
    assert not registry.blocks("+919876543210")
    body = "number,categories\n+919876543210\n9876543211,1|3\n+919876543210\n"
    answer = await client.post(
        "/v1/admin/dnd/imports", params={"mode": "full", "country_code": "91"},
        content=body, headers=ADMIN,
    )  # fmt: skip
    assert answer.status_code == 201, answer.text
    assert answer.json() == {
        "mode": "full", "generation": 1, "entries": 3, "unique": 2, "count_before": 0,
        "count": 2, "added": 2, "removed": 0, "seconds": answer.json()["seconds"],
    }  # fmt: skip
    # The very object the engine holds switched, without waiting for its refresh interval.
    assert registry.blocks("+919876543210")
    assert registry.blocks("+919876543211", 2)
    assert not registry.blocks("+919876543211", 3)
    removed = await client.post(
        "/v1/admin/dnd/imports?mode=remove", content="+919876543210\n", headers=ADMIN
    )
    assert removed.status_code == 201
    assert (removed.json()["generation"], removed.json()["removed"]) == (2, 1)
    assert not registry.blocks("+919876543210")
    # The upload was a temporary file: only the registry is left.
    assert sorted(p.name for p in registry.directory.iterdir()) == [
        ".import.lock", "current", "gen-000002.dnd"
    ]  # fmt: skip


async def test_lookup_and_stats(client: httpx.AsyncClient) -> None:
    empty = await client.get("/v1/admin/dnd", headers=ADMIN)
    assert empty.status_code == 200
    assert empty.json() == {"count": 0, "generation": 0, "file_size": 0, "created_at": None}
    await client.post(
        "/v1/admin/dnd/imports", content="+919876543210\n+919876543211,4|8\n", headers=ADMIN
    )
    stats = (await client.get("/v1/admin/dnd", headers=ADMIN)).json()
    assert (stats["count"], stats["generation"]) == (2, 1)
    assert stats["file_size"] > 0 and stats["created_at"].endswith("+00:00")
    found = await client.get("/v1/admin/dnd/+919876543211", headers=ADMIN)
    assert found.json() == {
        "number": "+919876543211", "on_registry": True, "fully_blocked": False,
        "accepted_categories": [4, 8],
    }  # fmt: skip
    fully = (await client.get("/v1/admin/dnd/919876543210", headers=ADMIN)).json()
    assert (fully["number"], fully["on_registry"], fully["fully_blocked"]) == (
        "+919876543210", True, True
    )  # fmt: skip
    absent = (await client.get("/v1/admin/dnd/+14155550100", headers=ADMIN)).json()
    assert (absent["on_registry"], absent["fully_blocked"]) == (False, False)
    bad = await client.get("/v1/admin/dnd/not-a-number", headers=ADMIN)
    assert bad.status_code == 400
    assert bad.json()["error"]["field"] == "number"


async def test_a_bad_line_is_a_400_naming_it_and_changes_nothing(
    client: httpx.AsyncClient, registry: DndRegistry
) -> None:
    await client.post("/v1/admin/dnd/imports", content="+919876543210\n", headers=ADMIN)
    bad = await client.post(
        "/v1/admin/dnd/imports", content="+919876543211\nnot a number\n", headers=ADMIN
    )
    assert bad.status_code == 400
    error = bad.json()["error"]
    assert error["field"] == "body"
    assert error["message"].startswith("nothing imported: line 2: ")
    assert registry.stats().generation == 1
    assert registry.blocks("+919876543210") and not registry.blocks("+919876543211")


@pytest.mark.parametrize(
    ("params", "content", "field"),
    [
        ({"mode": "replace"}, "+919876543210\n", "mode"),
        ({"country_code": "0"}, "+919876543210\n", "country_code"),
        ({}, "", None),
    ],
)
async def test_bad_parameters_and_an_empty_body_are_400s(
    client: httpx.AsyncClient, params: dict[str, str], content: str, field: str | None
) -> None:
    answer = await client.post(
        "/v1/admin/dnd/imports", params=params, content=content, headers=ADMIN
    )
    assert answer.status_code == 400
    assert answer.json()["error"]["field"] == field


async def test_an_import_while_another_runs_is_a_409(
    client: httpx.AsyncClient, registry: DndRegistry
) -> None:
    with dnd_file.import_lock(registry.directory):
        busy = await client.post("/v1/admin/dnd/imports", content="+919876543210\n",
                                 headers=ADMIN)  # fmt: skip
    assert busy.status_code == 409
    assert busy.json()["error"]["code"] == "conflict"


REQUESTS = [
    ("GET", "/v1/admin/dnd"),
    ("GET", "/v1/admin/dnd/+919876543210"),
    ("POST", "/v1/admin/dnd/imports"),
]


@pytest.mark.parametrize(("method", "path"), REQUESTS)
@pytest.mark.parametrize("headers", [{}, {"api-key": ""}, {"api-key": "wrong"},
                                     {"api-key": ADMIN_KEY + "x"}])  # fmt: skip
async def test_no_key_or_a_wrong_one_is_a_401(
    client: httpx.AsyncClient, registry: DndRegistry, method: str, path: str,
    headers: dict[str, str],
) -> None:  # fmt: skip
    answer = await client.request(method, path, headers=headers, content="+919876543210\n")
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "unauthorized"
    assert set(answer.json()["error"]) == {"code", "message", "field"}
    assert registry.stats().generation == 0  # a refused import changed nothing


@pytest.mark.parametrize(("method", "path"), REQUESTS)
async def test_with_no_admin_key_configured_everything_is_a_401(
    data_dir: Path, method: str, path: str
) -> None:
    for configured in [None, ""]:  # an empty variable is no key, not an empty key
        async with await client_for(make_app(data_dir, None, configured)) as client:
            for headers in [{}, {"api-key": ""}, {"api-key": "anything"}]:
                answer = await client.request(method, path, headers=headers, content="1\n")
                assert answer.status_code == 401
                assert "admin_key" in answer.json()["error"]["message"]
    assert not (data_dir / "dnd" / "current").exists()


async def test_an_app_without_a_registry_opens_the_one_in_the_data_dir(data_dir: Path) -> None:
    async with await client_for(make_app(data_dir, None, ADMIN_KEY)) as client:
        answer = await client.post(
            "/v1/admin/dnd/imports", content="+919876543210\n", headers=ADMIN
        )
        assert answer.status_code == 201
        found = await client.get("/v1/admin/dnd/+919876543210", headers=ADMIN)
        assert found.json()["on_registry"]
    assert DndRegistry.in_data_dir(data_dir).blocks("+919876543210")
