"""The HTTP app: health check and the contract's error format."""

from typing import Any

import httpx
import pytest
from fastapi import FastAPI, HTTPException

from voiceplane import __version__
from voiceplane.api.app import create_app
from voiceplane.config import load_config


class Switch:
    """A ``ready`` callable the test flips."""

    def __init__(self) -> None:
        self.on = False

    def __call__(self) -> bool:
        return self.on


def make_app(ready: Switch | None = None) -> FastAPI:
    return create_app(load_config(None, {}), ready=ready or Switch())


def client_for(app: FastAPI) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://voiceplane.test")


def error_of(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "field"}
    error: dict[str, Any] = body["error"]
    return error


async def test_healthz_is_503_starting_then_200_ok() -> None:
    ready = Switch()
    async with client_for(make_app(ready)) as client:
        before = await client.get("/healthz")
        ready.on = True
        after = await client.get("/healthz")

    assert before.status_code == 503
    assert before.json() == {"status": "starting"}
    assert after.status_code == 200
    assert after.json() == {"status": "ok"}


async def test_unknown_route_is_a_404_in_the_error_format() -> None:
    async with client_for(make_app()) as client:
        response = await client.get("/v1/nowhere")

    assert response.status_code == 404
    error = error_of(response)
    assert error["code"] == "not_found"
    assert "/v1/nowhere" in error["message"]
    assert error["field"] is None


async def test_wrong_method_is_a_405_in_the_error_format() -> None:
    async with client_for(make_app()) as client:
        response = await client.post("/healthz")

    assert response.status_code == 405
    assert error_of(response)["code"] == "method_not_allowed"
    assert "GET" in response.headers["allow"]


def app_with_routes() -> FastAPI:
    app = make_app()

    @app.get("/items/{item_id}")
    async def get_item(item_id: int, limit: int = 10) -> dict[str, int]:
        return {"id": item_id, "limit": limit}

    @app.post("/items")
    async def add_item(item: dict[str, int]) -> dict[str, int]:
        return item

    @app.get("/conflict")
    async def conflict() -> None:
        raise HTTPException(409, detail={"code": "duplicate", "message": "exists", "field": "to"})

    @app.get("/missing")
    async def missing() -> None:
        raise HTTPException(404, detail="no such call")

    @app.get("/limited")
    async def limited() -> None:
        raise HTTPException(429, detail="slow down", headers={"Retry-After": "3"})

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("internal detail that must not leak")

    return app


@pytest.mark.parametrize(
    ("path", "field"),
    [("/items/abc", "item_id"), ("/items/1?limit=many", "limit")],
)
async def test_validation_error_is_a_400_naming_the_field(path: str, field: str) -> None:
    async with client_for(app_with_routes()) as client:
        response = await client.get(path)

    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "invalid_input"
    assert error["field"] == field
    assert error["message"]


async def test_invalid_json_body_is_a_400() -> None:
    async with client_for(app_with_routes()) as client:
        response = await client.post(
            "/items", content=b"{not json", headers={"content-type": "application/json"}
        )

    assert response.status_code == 400
    assert error_of(response)["code"] == "invalid_input"


async def test_http_exception_with_a_detail_dict_keeps_code_and_field() -> None:
    async with client_for(app_with_routes()) as client:
        response = await client.get("/conflict")

    assert response.status_code == 409
    assert error_of(response) == {"code": "duplicate", "message": "exists", "field": "to"}


async def test_http_exception_with_a_message_keeps_it_and_its_headers() -> None:
    async with client_for(app_with_routes()) as client:
        missing = await client.get("/missing")
        limited = await client.get("/limited")

    assert missing.status_code == 404
    assert error_of(missing) == {"code": "not_found", "message": "no such call", "field": None}
    assert limited.status_code == 429
    assert error_of(limited)["code"] == "too_many_requests"
    assert limited.headers["retry-after"] == "3"


async def test_unexpected_error_is_a_500_without_details() -> None:
    async with client_for(app_with_routes()) as client:
        response = await client.get("/boom")

    assert response.status_code == 500
    assert error_of(response)["code"] == "internal_error"
    assert "must not leak" not in response.text


async def test_openapi_has_title_version_and_healthz() -> None:
    async with client_for(make_app()) as client:
        schema = (await client.get("/openapi.json")).json()

    assert schema["info"]["title"] == "voiceplane"
    assert schema["info"]["version"] == __version__
    assert "/healthz" in schema["paths"]
