"""The whole platform in the test's event loop: ``serve`` with real HTTP and real SIP.

``running_platform`` starts exactly what ``voiceplane serve`` starts (store, SIP, media,
the engine, the HTTP API on a free port; the sandbox operator when no trunk is given),
creates an account with a bridge number, and hands the test an HTTP client speaking to the
real listening socket. Calls then cross real SIP to whatever the trunk points at (SIPp as
the operator, usually).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.support.sipp import free_port
from voiceplane.config import Config, load_config
from voiceplane.server import serve
from voiceplane.services import Platform, build_platform
from voiceplane.store import repository as repo

BRIDGE = "+918047100000"


@dataclass
class Running:
    config: Config
    platform: Platform
    client: httpx.AsyncClient
    sid: str
    api_key: str
    bridge: str = BRIDGE
    accounts: dict[str, str] = field(default_factory=dict)

    @property
    def headers(self) -> dict[str, str]:
        return {"api-key": self.api_key}

    async def post(self, path: str, **fields: Any) -> httpx.Response:
        return await self.client.post(
            f"/v1/{self.sid}/voice/{path}", json=fields, headers=self.headers
        )

    async def outbound(self, **fields: Any) -> str:
        fields.setdefault("bridge", self.bridge)
        response = await self.post("outbound", **fields)
        assert response.status_code == 202, response.text
        call_id: str = response.json()["id"]
        return call_id

    async def click_to_call(self, **fields: Any) -> str:
        fields.setdefault("bridge", self.bridge)
        response = await self.post("click-to-call", **fields)
        assert response.status_code == 202, response.text
        call_id: str = response.json()["id"]
        return call_id

    async def record(self, call_id: str) -> dict[str, Any]:
        response = await self.client.get(
            f"/v1/{self.sid}/voice/calls/{call_id}", headers=self.headers
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def wait_for(
        self, call_id: str, *, state: str = "completed", timeout: float = 20
    ) -> dict[str, Any]:
        """Poll the record through the API until it reaches ``state``."""
        order = ("queued", "dialing", "ringing", "answered", "completed")
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            record = await self.record(call_id)
            if order.index(record["state"]) >= order.index(state):
                return record
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"call {call_id} never reached {state}: {record}")
            await asyncio.sleep(0.05)

    async def cancel(self, call_id: str) -> httpx.Response:
        return await self.client.post(
            f"/v1/{self.sid}/voice/calls/{call_id}/cancel", headers=self.headers
        )


def platform_environment(
    tmp_path: Path,
    *,
    trunk: str | None,
    database_url: str | None = None,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The ``VOICEPLANE_*`` variables for a platform on free loopback ports."""
    environ = {
        "VOICEPLANE_API_LISTEN": f"127.0.0.1:{free_port('tcp')}",
        "VOICEPLANE_SIP_LISTEN": f"127.0.0.1:{free_port('udp')}",
        "VOICEPLANE_SIP_TRANSPORTS": "udp",
        "VOICEPLANE_TRUNK_HOST": trunk or "",
        "VOICEPLANE_DATA_DIR": str(tmp_path / "data"),
        "VOICEPLANE_SANDBOX_LISTEN": f"127.0.0.1:{free_port('udp')}",
        "VOICEPLANE_SANDBOX_TRANSPORTS": "udp",
    }
    if database_url:
        environ["VOICEPLANE_STORE_URL"] = database_url
    environ.update(extra or {})
    return environ


@contextlib.asynccontextmanager
async def running_platform(
    tmp_path: Path,
    *,
    trunk: str | None,
    database_url: str | None = None,
    extra: Mapping[str, str] | None = None,
) -> AsyncIterator[Running]:
    config = load_config(
        None, platform_environment(tmp_path, trunk=trunk, database_url=database_url, extra=extra)
    )
    platform = build_platform(config)
    stop = asyncio.Event()
    task = asyncio.create_task(
        serve(
            config,
            platform.services,
            stop=stop,
            sessions=platform.sessions,
            commands=platform.commands,
            writer=platform.writer,
            metrics=platform.metrics,
        )
    )
    base = f"http://{config.api.listen.host}:{config.api.listen.port}"
    # Idle connections are dropped after 2 s, before uvicorn closes them (5 s): reusing one
    # the server is closing at that moment fails with "Server disconnected".
    limits = httpx.Limits(keepalive_expiry=2.0)
    async with httpx.AsyncClient(base_url=base, timeout=10, limits=limits) as client:
        try:
            await _wait_ready(client, task)
            with platform.sessions.begin() as session:
                account, api_key = repo.create_account(session, name="acme")
                repo.add_number(session, account=account, e164=BRIDGE, kind="bridge")
                sid = account.sid
            yield Running(config, platform, client, sid, api_key)
        finally:
            stop.set()
            await asyncio.wait_for(task, timeout=20)


async def _wait_ready(client: httpx.AsyncClient, task: asyncio.Task[None]) -> None:
    for _ in range(400):
        if task.done():
            task.result()  # raises what made serve stop
            raise AssertionError("serve stopped before it was ready")
        with contextlib.suppress(httpx.TransportError):
            if (await client.get("/healthz")).status_code == 200:
                return
        await asyncio.sleep(0.025)
    raise AssertionError("serve did not become ready in 10 s")
