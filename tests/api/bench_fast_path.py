"""CPU per placing POST in the HTTP app, in process: no network, no engine, no store write.

    .venv/bin/python tests/api/bench_fast_path.py [--posts 3000] [--rounds 3]

Drives the ASGI app that ``voiceplane serve`` runs (``create_app``) with the requests
``bench/api_calls.py`` sends (JSON bodies, the same numbers), one after another on a uvloop
loop, and prints ``time.process_time`` per POST for click-to-call and outbound, through the
fast path and straight to the FastAPI routes (``create_app(..., fast_path=False)``), with and
without uvicorn's proxy-headers middleware in front. The key and the bridge are checked once
(the key cache keeps them, as in serve); the store writer is a no-op that resolves at once,
the engine's doorbell does nothing and the collector is tuned as in serve, so what is
measured is the HTTP side of serve's loop. The variants take turns in chunks of
``--chunk`` POSTs, so that a busy neighbour on the machine weighs on all of them alike; each
POST's numbers are new (as in bench/api_calls.py; a number's E.164 form is cached).
Not a test (pytest does not collect it).

2026-11-27 19:18 UTC, load average 0.7, 3 rounds of 3,000 POSTs, medians (µs of CPU per POST):

    ==============  =======  ==================  =========  ==================
    service         FastAPI  + proxy headers     fast path  + proxy headers
    ==============  =======  ==================  =========  ==================
    click-to-call   260.8    239.8               113.5      126.1
    outbound        251.5    230.2                97.3       99.9
    ==============  =======  ==================  =========  ==================

So the fast path takes 47-61 % off a placing POST in process; serve also no longer writes
uvicorn's access log line (about 26 µs of CPU a request, measured apart), which makes
click-to-call about 266 -> 126 µs and outbound about 256 -> 100 µs as serve runs them.
The proxy-headers middleware alone costs about 3 µs (measured apart; here it is in the noise).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import uvloop
from starlette.types import ASGIApp, Message
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from voiceplane.api.app import create_app
from voiceplane.calls.commands import NoEngine
from voiceplane.config import load_config
from voiceplane.runtime import tune_gc
from voiceplane.store import repository
from voiceplane.store.db import create_engine_for, migrate, session_factory
from voiceplane.store.writer import StoreWriter

BRIDGE = "+918047100000"
ANSWERS = "+9198765{:05d}"  # as bench/api_calls.py
AGENT_BUSY = "+919876500486"
WARM_UP = 200  # POSTs through each variant before each round


class InstantWriter:
    """A store writer whose every item is 'committed' at once (nothing is written)."""

    def submit_item(
        self, apply: object, item: object, *, key: object = None, urgent: bool = False
    ) -> Any:
        done = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


def body_of(service: str, index: int) -> bytes:
    """The JSON body bench/api_calls.py sends for call ``index``."""
    answer = ANSWERS.format(index % 100_000 + 1)
    kind = index % 10
    if service == "click-to-call":
        if kind == 0:
            fields = {"from": AGENT_BUSY, "to": answer, "bridge": BRIDGE}
        elif kind == 1:
            fields = {"from": answer, "to": AGENT_BUSY, "bridge": BRIDGE}
        else:
            fields = {"from": answer, "to": ANSWERS.format(22222), "bridge": BRIDGE}
    else:
        fields = {"to": AGENT_BUSY if kind == 0 else answer, "bridge": BRIDGE}
    return json.dumps(fields).encode()


def scope_of(path: str, key: str, body: bytes) -> dict[str, Any]:
    """An HTTP scope as uvicorn's httptools protocol builds it."""
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "server": ("127.0.0.1", 8080),
        "client": ("127.0.0.1", 51234),
        "scheme": "http",
        "method": "POST",
        "root_path": "",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [
            (b"host", b"127.0.0.1:8080"),
            (b"api-key", key.encode()),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
        "state": {},
    }


async def post(app: ASGIApp, path: str, key: str, body: bytes) -> int:
    """One POST through ``app``; its status."""
    sent: list[Message] = []
    request: Message = {"type": "http.request", "body": body, "more_body": False}
    given = False

    async def receive() -> Message:
        nonlocal given
        if given:
            return {"type": "http.disconnect"}
        given = True
        return request

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope_of(path, key, body), receive, send)
    status: int = sent[0]["status"]
    return status


async def cpu_of(app: ASGIApp, path: str, key: str, bodies: list[bytes]) -> float:
    """process_time of POSTing ``bodies`` through ``app``, in seconds."""
    started = time.process_time()
    for body in bodies:
        await post(app, path, key, body)
    return time.process_time() - started


class Numbering:
    """Call indexes never used before, so that every POST brings new numbers."""

    def __init__(self) -> None:
        self.next = 0

    def bodies(self, service: str, count: int) -> list[bytes]:
        first, self.next = self.next, self.next + count
        return [body_of(service, index) for index in range(first, first + count)]


def make_apps(data: Path, url: str) -> tuple[str, str, dict[str, ASGIApp]]:
    migrate(url)
    sessions = session_factory(create_engine_for(url))
    with sessions.begin() as session:
        account, key = repository.create_account(session, name="bench")
        repository.add_number(session, account=account, e164=BRIDGE, kind="bridge")
        sid = account.sid
    config = load_config(None, {"VOICEPLANE_DATA_DIR": str(data)})
    writer = cast(StoreWriter, InstantWriter())

    def build(fast_path: bool) -> ASGIApp:
        return create_app(
            config, ready=lambda: True, sessions=sessions, commands=NoEngine(), writer=writer,
            fast_path=fast_path,
        )  # fmt: skip

    apps: dict[str, ASGIApp] = {}
    for name, fast_path in (("fast path", True), ("FastAPI", False)):
        apps[name] = build(fast_path)
        # What serve runs today: uvicorn's proxy_headers is on by default.
        behind_proxy = ProxyHeadersMiddleware(cast(Any, build(fast_path)), "127.0.0.1")
        apps[f"{name} + proxy headers"] = cast(ASGIApp, behind_proxy)
    return sid, key, apps


async def run(posts: int, rounds: int, chunk: int) -> Mapping[tuple[str, str], list[float]]:
    """µs per POST of each service and variant, one figure per round."""
    with tempfile.TemporaryDirectory() as tmp:
        sid, key, apps = make_apps(Path(tmp) / "data", f"sqlite:///{tmp}/bench.db")
        tune_gc()  # as serve does once started
        numbering = Numbering()
        figures: dict[tuple[str, str], list[float]] = {}
        for _ in range(rounds):
            for service in ("click-to-call", "outbound"):
                path = f"/v1/{sid}/voice/{service}"
                for app in apps.values():
                    for body in numbering.bodies(service, WARM_UP):
                        assert await post(app, path, key, body) == 202
                spent = dict.fromkeys(apps, 0.0)
                for _ in range(posts // chunk):
                    for name, app in apps.items():
                        bodies = numbering.bodies(service, chunk)
                        spent[name] += await cpu_of(app, path, key, bodies)
                for name, seconds in spent.items():
                    per_post = seconds / (posts // chunk * chunk) * 1e6
                    figures.setdefault((service, name), []).append(per_post)
        return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--posts", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--chunk", type=int, default=100)
    args = parser.parse_args()
    load = os.getloadavg()
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        figures = runner.run(run(args.posts, args.rounds, args.chunk))
    print(f"{args.posts} POSTs x {args.rounds} rounds; load average before {load[0]:.2f}, "
          f"after {os.getloadavg()[0]:.2f}")  # fmt: skip
    for (service, name), costs in sorted(figures.items()):
        print(
            f"{service:14} {name:28} median {statistics.median(costs):7.1f} µs/POST "
            f"(min {min(costs):.1f}, max {max(costs):.1f})"
        )


if __name__ == "__main__":
    main()
