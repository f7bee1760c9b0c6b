"""``server.serve`` in process: start order, readiness, reverse stop order, failures."""

import asyncio
import logging
import socket

import httpx
import pytest

from voiceplane.config import Config, load_config
from voiceplane.server import ServeError, Service, serve


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def config_on(port: int) -> Config:
    return load_config(None, {"VOICEPLANE_API_LISTEN": f"127.0.0.1:{port}"})


class Recorder:
    """A fake service that writes what happens to a shared journal."""

    def __init__(self, name: str, journal: list[str], *, port: int, fail_start: bool = False):
        self.name = name
        self.journal = journal
        self.port = port
        self.fail_start = fail_start

    async def start(self) -> None:
        self.journal.append(f"start {self.name}")
        if self.fail_start:
            raise RuntimeError(f"{self.name} cannot start")

    async def stop(self) -> None:
        http_up = await http_answers(self.port)
        self.journal.append(f"stop {self.name}" + (" (http up)" if http_up else ""))


async def http_answers(port: int) -> bool:
    try:
        async with httpx.AsyncClient() as client:
            await client.get(f"http://127.0.0.1:{port}/healthz", timeout=0.5)
    except httpx.TransportError:
        return False
    return True


async def wait_healthy(port: int, task: "asyncio.Task[None]") -> None:
    async with httpx.AsyncClient() as client:
        for _ in range(200):
            assert not task.done(), task
            try:
                response = await client.get(f"http://127.0.0.1:{port}/healthz", timeout=0.5)
            except httpx.TransportError:
                response = None
            if response is not None and response.status_code == 200:
                return
            await asyncio.sleep(0.05)
    pytest.fail("never healthy")


async def test_services_start_in_order_and_stop_in_reverse_after_http() -> None:
    port, stop = free_port(), asyncio.Event()
    journal: list[str] = []
    services: list[Service] = [Recorder(name, journal, port=port) for name in ("a", "b", "c")]

    task = asyncio.create_task(serve(config_on(port), services, stop=stop))
    await wait_healthy(port, task)
    journal.append("healthy")
    stop.set()
    await asyncio.wait_for(task, timeout=10)

    assert journal == ["start a", "start b", "start c", "healthy", "stop c", "stop b", "stop a"]


async def test_serve_without_services() -> None:
    port, stop = free_port(), asyncio.Event()

    task = asyncio.create_task(serve(config_on(port), stop=stop))
    await wait_healthy(port, task)
    stop.set()
    await asyncio.wait_for(task, timeout=10)

    assert not await http_answers(port)


async def test_a_failing_start_stops_the_started_services_and_never_starts_http() -> None:
    port = free_port()
    journal: list[str] = []
    services: list[Service] = [
        Recorder("a", journal, port=port),
        Recorder("b", journal, port=port, fail_start=True),
        Recorder("c", journal, port=port),
    ]

    with pytest.raises(RuntimeError, match="b cannot start"):
        await asyncio.wait_for(serve(config_on(port), services), timeout=10)

    assert journal == ["start a", "start b", "stop a"]


async def test_a_taken_http_port_is_a_serve_error_after_stopping_services() -> None:
    journal: list[str] = []
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        services: list[Service] = [Recorder("a", journal, port=port)]

        with pytest.raises(ServeError, match=f"127.0.0.1:{port}"):
            await asyncio.wait_for(serve(config_on(port), services), timeout=10)

    assert journal == ["start a", "stop a"]


async def test_stop_set_before_serving_skips_http() -> None:
    port, stop = free_port(), asyncio.Event()
    journal: list[str] = []
    stop.set()

    await asyncio.wait_for(
        serve(config_on(port), [Recorder("a", journal, port=port)], stop=stop), timeout=10
    )

    assert journal == ["start a", "stop a"]


@pytest.mark.parametrize("access_log", [False, True])
async def test_the_access_log_and_server_header_follow_the_config(access_log: bool) -> None:
    port = free_port()
    config = load_config(
        None,
        {
            "VOICEPLANE_API_LISTEN": f"127.0.0.1:{port}",
            "VOICEPLANE_API_ACCESS_LOG": "true" if access_log else "false",
        },
    )
    stop = asyncio.Event()
    task = asyncio.create_task(serve(config, [], stop=stop))
    await wait_healthy(port, task)
    try:
        async with httpx.AsyncClient() as client:
            response = await client.get(f"http://127.0.0.1:{port}/healthz")
        # uvicorn writes a request's line only if its access logger has somewhere to go.
        logs = logging.getLogger("uvicorn.access").hasHandlers()
    finally:
        stop.set()
        await task
    assert response.status_code == 200
    assert "server" not in response.headers  # nothing clients need
    assert logs is access_log
