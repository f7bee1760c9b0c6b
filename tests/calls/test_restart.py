"""A crash loses nothing: SIGKILL ``voiceplane serve`` while calls ring and talk, start it again.

Real processes, real SIP, real HTTP. SIPp plays the operator (``operator_by_number``: …000
rings forever, …111 answers and waits for BYE, …486 busy). The first ``serve`` places five
calls; once four of them are live (ringing or connected) and the fifth is still waiting for
its scheduled time, the process is killed with SIGKILL, so nothing of it gets to say goodbye.
The second ``serve`` on the same store must then give every interrupted call its final status
from what the record showed (an answered leg keeps ANSWER, a leg still ringing gets FAILED),
duplicate nothing, and still dial the scheduled call, which ends the usual way (BUSY).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import sys
import wave
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.platform import BRIDGE, platform_environment
from tests.support.sipp import SippMessage, SippServer, requires_sipp
from voiceplane.calls.status import Status

pytestmark = [requires_sipp, pytest.mark.sipp]

# One number per party, so every leg and every INVITE SIPp saw can be told apart.
RINGS = "+919876500000"  # outbound, rings until the crash
TALKS = "+919876500111"  # outbound, answered, the prompt still playing at the crash
AGENT = "+919876520111"  # click-to-call: the agent answered...
CUSTOMER_RINGS = "+919876520000"  # ...and the customer still rings at the crash
AGENT_TALKS = "+919876530111"  # click-to-call: both answered and connected at the crash
CUSTOMER_TALKS = "+919876531111"
LATER_BUSY = "+919876540486"  # outbound scheduled for after the restart: 486

SCHEDULE_AHEAD = timedelta(seconds=4)  # the scheduled call is due after the kill
READY_WITHIN_S = 20.0
LIVE_WITHIN_S = 10.0
RECOVERED_WITHIN_S = 3.0
LIVE_STATES = ("dialing", "ringing", "answered")


def voiceplane_bin() -> Path:
    path = Path(sys.executable).parent / "voiceplane"
    assert path.exists(), f"{path} is missing: run .venv/bin/pip install -e '.[dev]'"
    return path


def child_environ(overrides: Mapping[str, str]) -> dict[str, str]:
    """This process's environment without its VOICEPLANE_* settings, plus ``overrides``."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("VOICEPLANE_")}
    return {**environ, **overrides}


def silence_wav(path: Path, seconds: int) -> Path:
    """A prompt long enough to keep an answered outbound call up until the crash."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(b"\0\0" * 8000 * seconds)
    return path


def moment(text: str | None) -> datetime:
    assert text is not None
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def legs_of(record: dict[str, Any]) -> list[tuple[int, str]]:
    return [(leg["leg"], leg["number"]) for leg in record["legs"]]


def leg(record: dict[str, Any], number: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [leg for leg in record["legs"] if leg["number"] == number]
    assert len(found) == 1, record
    return found[0]


def via_port(message: SippMessage) -> int:
    """The port the request was sent from, by its topmost Via."""
    found = re.search(r":(\d+)", (message.header("Via") or "").split(";")[0])
    assert found is not None, message.text
    return int(found.group(1))


# --- a serve process -------------------------------------------------------------------------


@dataclass
class Serve:
    process: asyncio.subprocess.Process
    environ: dict[str, str]
    log: Path

    @property
    def api(self) -> str:
        return f"http://{self.environ['VOICEPLANE_API_LISTEN']}"

    @property
    def sip_port(self) -> int:
        return int(self.environ["VOICEPLANE_SIP_LISTEN"].rsplit(":", 1)[1])

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@contextlib.asynccontextmanager
async def serving(tmp_path: Path, environ: dict[str, str], name: str) -> AsyncIterator[Serve]:
    """``voiceplane serve`` as a child process, healthy; killed on the way out if still alive."""
    log = tmp_path / f"{name}.log"
    with log.open("wb") as sink:
        process = await asyncio.create_subprocess_exec(
            str(voiceplane_bin()), "serve",
            cwd=tmp_path, env=child_environ(environ), stdout=sink, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
    serve = Serve(process, environ, log)
    try:
        await _wait_healthy(serve)
        yield serve
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def _wait_healthy(serve: Serve) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + READY_WITHIN_S
    async with httpx.AsyncClient(base_url=serve.api, timeout=1.0) as client:
        while loop.time() < deadline:
            if serve.process.returncode is not None:
                pytest.fail(f"voiceplane serve exited early:\n{serve.output()}")
            with contextlib.suppress(httpx.TransportError):
                if (await client.get("/healthz")).status_code == 200:
                    return
            await asyncio.sleep(0.05)
    pytest.fail(f"/healthz not 200 within {READY_WITHIN_S} s:\n{serve.output()}")


async def run_cli(*args: str, environ: Mapping[str, str], cwd: Path) -> str:
    process = await asyncio.create_subprocess_exec(
        str(voiceplane_bin()), *args,
        cwd=cwd, env=child_environ(environ),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode == 0, f"voiceplane {' '.join(args)}: {err.decode()}"
    return out.decode()


# --- the API ---------------------------------------------------------------------------------


@dataclass
class Api:
    client: httpx.AsyncClient
    sid: str
    api_key: str

    async def place(self, path: str, **fields: Any) -> str:
        response = await self.client.post(
            f"/v1/{self.sid}/voice/{path}",
            json={"bridge": BRIDGE, **fields},
            headers={"api-key": self.api_key},
        )
        assert response.status_code == 202, response.text
        call_id: str = response.json()["id"]
        return call_id

    async def record(self, call_id: str) -> dict[str, Any]:
        response = await self.client.get(
            f"/v1/{self.sid}/voice/calls/{call_id}", headers={"api-key": self.api_key}
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def call_logs(self) -> dict[str, Any]:
        response = await self.client.get(
            f"/v1/{self.sid}/voice/call-logs",
            params={"limit": 100},
            headers={"api-key": self.api_key},
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def until(
        self, call_id: str, reached: Callable[[dict[str, Any]], bool], what: str, within: float
    ) -> dict[str, Any]:
        """Poll the record until ``reached`` says yes."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            record = await self.record(call_id)
            if reached(record):
                return record
            if loop.time() > deadline:
                raise AssertionError(f"call {call_id} never {what} within {within} s: {record}")
            await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def api(serve: Serve, sid: str, api_key: str) -> AsyncIterator[Api]:
    # Idle connections go before uvicorn's 5 s keep-alive ends (see tests/support/platform.py).
    limits = httpx.Limits(keepalive_expiry=2.0)
    async with httpx.AsyncClient(base_url=serve.api, timeout=10, limits=limits) as client:
        yield Api(client, sid, api_key)


# --- the test --------------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)])
def store_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """None: the default store, a SQLite file in the data directory; else a fresh PostgreSQL."""
    if request.param == "sqlite":
        yield None
    else:
        yield request.getfixturevalue("postgresql_database_url")


def answered(record: dict[str, Any]) -> bool:
    return bool(record["state"] == "answered")


def ringing(record: dict[str, Any]) -> bool:
    return bool(record["state"] == "ringing")


def agent_answered_customer_rings(record: dict[str, Any]) -> bool:
    legs = {leg["leg"]: leg for leg in record["legs"]}
    return (
        1 in legs and legs[1]["answer_time"] is not None
        and 2 in legs and legs[2]["ring_time"] is not None
    )  # fmt: skip


async def test_a_killed_serve_completes_every_interrupted_call_and_dials_the_queued_one(
    tmp_path: Path, store_url: str | None
) -> None:
    # Audio targets must be in the data directory's media folder.
    prompt = silence_wav(tmp_path / "data" / "media" / "minute.wav", 60)

    def environment(trunk: str) -> dict[str, str]:
        # Fresh ports each time; the data directory (and the store) are the same.
        return platform_environment(tmp_path, trunk=trunk, database_url=store_url)

    async with SippServer("operator_by_number", tmp_path, calls=7, duration_ms=None) as sipp:
        host, port = sipp.address
        first_env = environment(f"{host}:{port}")
        created = await run_cli("account", "create", "Acme", "--json", environ=first_env,
                                cwd=tmp_path)  # fmt: skip
        account = json.loads(created)
        await run_cli("number", "add", BRIDGE, "--account", account["sid"], "--kind", "bridge",
                      environ=first_env, cwd=tmp_path)  # fmt: skip

        # --- before: five calls, four of them live ------------------------------------------
        async with serving(tmp_path, first_env, "serve-1") as first:
            async with api(first, account["sid"], account["api_key"]) as before_api:
                rings = await before_api.place("outbound", to=RINGS, target="hi", timeout=60)
                talks = await before_api.place("outbound", to=TALKS, target=str(prompt))
                half = await before_api.place(
                    "click-to-call", **{"from": AGENT, "to": CUSTOMER_RINGS, "timeout": 60}
                )
                both = await before_api.place(
                    "click-to-call", **{"from": AGENT_TALKS, "to": CUSTOMER_TALKS}
                )
                live: dict[str, dict[str, Any]] = {}
                waits: list[tuple[str, Callable[[dict[str, Any]], bool], str]] = [
                    (rings, ringing, "rang"),
                    (talks, answered, "was answered"),
                    (half, agent_answered_customer_rings, "had its customer ringing"),
                    (both, answered, "connected both parties"),
                ]
                for call_id, reached, what in waits:
                    live[call_id] = await before_api.until(call_id, reached, what, LIVE_WITHIN_S)
                # Placed last, just before the kill: due only once the first serve is dead.
                due = datetime.now(UTC) + SCHEDULE_AHEAD
                later = await before_api.place(
                    "outbound", to=LATER_BUSY, target="hi", time=due.isoformat()
                )
                for call_id in live:  # still live: nothing ended them before the kill
                    assert (await before_api.record(call_id))["state"] in LIVE_STATES
                queued = await before_api.record(later)
            assert queued["state"] == "queued" and queued["legs"] == [], queued

            # Whole seconds: the record's times are rounded to milliseconds.
            killed_at = datetime.now(UTC).replace(microsecond=0)
            first.process.send_signal(signal.SIGKILL)
            assert await first.process.wait() == -signal.SIGKILL

        # --- after: the same store, a new process --------------------------------------------
        second_env = environment(f"{host}:{port}")
        async with serving(tmp_path, second_env, "serve-2") as second:
            async with api(second, account["sid"], account["api_key"]) as after_api:
                after: dict[str, dict[str, Any]] = {}
                for call_id in live:
                    after[call_id] = await after_api.until(
                        call_id, lambda r: r["state"] == "completed", "completed",
                        RECOVERED_WITHIN_S,
                    )  # fmt: skip
                scheduled = await after_api.until(
                    later, lambda r: r["state"] == "completed", "completed", 15
                )
                logs = await after_api.call_logs()
        sipp_result = await sipp.stop()

    # Every interrupted call: completed, said so, the same legs (none added, none lost), and
    # every leg ended.
    for call_id, record in after.items():
        assert record["state"] == "completed", record
        assert "interrupted" in (record["reason"] or ""), record
        assert record["end_time"] is not None and moment(record["end_time"]) >= killed_at
        assert legs_of(record) == legs_of(live[call_id]), (live[call_id], record)
        for one in record["legs"]:
            assert one["end_time"] is not None, record
            assert one["status"] is not None, record

    # What each call showed at the kill decides its status.
    record = after[rings]
    assert record["status"] == Status.FAILED.value
    assert leg(record, RINGS)["status"] == Status.FAILED.value
    assert leg(record, RINGS)["hangup_by"] == "platform"
    assert record["billsec"] == 0 and record["answer_time"] is None

    record = after[talks]
    assert record["status"] == Status.ANSWER.value
    talked = leg(record, TALKS)
    assert (talked["status"], talked["sip_code"], talked["hangup_by"]) == (
        Status.ANSWER.value, None, "platform",
    )  # fmt: skip
    assert talked["answer_time"] == live[talks]["legs"][0]["answer_time"]
    assert record["answer_time"] is not None and record["billsec"] >= 1

    record = after[half]
    assert record["status"] == Status.FAILED_LEG2.value
    assert leg(record, AGENT)["status"] == Status.ANSWER.value
    assert leg(record, CUSTOMER_RINGS)["status"] == Status.FAILED.value

    record = after[both]
    assert record["status"] == Status.ANSWER.value
    assert leg(record, AGENT_TALKS)["status"] == Status.ANSWER.value
    assert leg(record, CUSTOMER_TALKS)["status"] == Status.ANSWER.value

    # The scheduled call was dialled by the second process, once, and ended as usual.
    assert scheduled["status"] == Status.BUSY.value, scheduled
    assert "interrupted" not in (scheduled["reason"] or "")
    busy = leg(scheduled, LATER_BUSY)
    assert (busy["status"], busy["sip_code"], busy["hangup_by"]) == (
        Status.BUSY.value, 486, "callee",
    )  # fmt: skip
    assert moment(busy["start_time"]) >= killed_at

    # Nothing duplicated: the five calls and no others; none still live.
    assert logs["total"] == 5
    assert {call["id"] for call in logs["calls"]} == {*live, later}
    assert all(call["state"] == "completed" for call in logs["calls"])

    # SIPp's side: one INVITE per party; the interrupted ones all came from the first process
    # (the second redialled nobody), the scheduled one from the second.
    invites: dict[str, list[SippMessage]] = {}
    for invite in sipp_result.received("INVITE"):
        if not invite.header("To") or ";tag=" in (invite.header("To") or ""):
            continue  # a re-INVITE inside a dialog (the connected click-to-call)
        number = next(n for n in (RINGS, TALKS, AGENT, CUSTOMER_RINGS, AGENT_TALKS,
                                  CUSTOMER_TALKS, LATER_BUSY) if n in (invite.request_uri or ""))
        invites.setdefault(number, []).append(invite)
    assert {number: len(found) for number, found in invites.items()} == {
        RINGS: 1, TALKS: 1, AGENT: 1, CUSTOMER_RINGS: 1, AGENT_TALKS: 1, CUSTOMER_TALKS: 1,
        LATER_BUSY: 1,
    }, sipp_result.flow()  # fmt: skip
    for number, (invite,) in invites.items():
        expected = second.sip_port if number == LATER_BUSY else first.sip_port
        assert via_port(invite) == expected, (number, invite.text)
    assert "Traceback" not in second.output(), second.output()
