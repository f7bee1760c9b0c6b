"""The ``voiceplane`` command, run as a real process."""

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.sipp import SippClient, Transport, requires_sipp
from voiceplane import __version__

READY_WITHIN_S = 20.0
EXIT_WITHIN_S = 10.0


def voiceplane_bin() -> Path:
    """The console script installed next to the interpreter running the tests (.venv/bin)."""
    path = Path(sys.executable).parent / "voiceplane"
    assert path.exists(), f"{path} is missing: run .venv/bin/pip install -e '.[dev]'"
    return path


def free_port() -> int:
    """A loopback port that is free for TCP and for UDP right now."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", 0))
            port: int = tcp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port


def clean_environ(overrides: Mapping[str, str]) -> dict[str, str]:
    """This process's environment without any VOICEPLANE_* setting, plus ``overrides``."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("VOICEPLANE_")}
    return {**environ, **overrides}


@dataclass
class Running:
    process: subprocess.Popen[bytes]
    api_port: int
    log: Path
    sip_port: int = 0

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def started(tmp_path: Path) -> Iterator[Running]:
    """``voiceplane serve`` on free loopback ports; killed afterwards if it is still alive."""
    api_port, sip_port = free_port(), free_port()
    environ = clean_environ(
        {
            "VOICEPLANE_API_LISTEN": f"127.0.0.1:{api_port}",
            "VOICEPLANE_SIP_LISTEN": f"127.0.0.1:{sip_port}",
            "VOICEPLANE_DATA_DIR": str(tmp_path / "data"),
        }
    )
    log = tmp_path / "serve.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [str(voiceplane_bin()), "serve"],
            cwd=tmp_path,
            env=environ,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        yield Running(process, api_port, log, sip_port)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def wait_until_healthy(running: Running) -> None:
    url = f"http://127.0.0.1:{running.api_port}/healthz"
    deadline = time.monotonic() + READY_WITHIN_S
    while time.monotonic() < deadline:
        if running.process.poll() is not None:
            pytest.fail(f"voiceplane serve exited early:\n{running.output()}")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    pytest.fail(f"/healthz not 200 within {READY_WITHIN_S} s:\n{running.output()}")


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_serve_becomes_healthy_and_stops_cleanly_on_signal(
    started: Running, stop_signal: signal.Signals
) -> None:
    wait_until_healthy(started)

    started.process.send_signal(stop_signal)

    try:
        code = started.process.wait(timeout=EXIT_WITHIN_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"still running {EXIT_WITHIN_S} s after {stop_signal.name}")
    assert code == 0, started.output()
    assert "Traceback" not in started.output()


def run_cli(*args: str, env: Mapping[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(voiceplane_bin()), *args],
        env=clean_environ(env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_serve_with_a_bad_listen_address_exits_2_with_a_clear_message(tmp_path: Path) -> None:
    result = run_cli("serve", env={"VOICEPLANE_API_LISTEN": "localhost"}, cwd=tmp_path)

    assert result.returncode == 2
    assert "api.listen" in result.stderr
    assert "VOICEPLANE_API_LISTEN" in result.stderr
    assert "host:port" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_with_an_unknown_key_in_the_config_file_exits_2(tmp_path: Path) -> None:
    config = tmp_path / "voiceplane.toml"
    config.write_text('[api]\nlisten = "127.0.0.1:8080"\nport = 8080\n')

    result = run_cli("serve", "--config", str(config), env={}, cwd=tmp_path)

    assert result.returncode == 2
    assert "api.port" in result.stderr
    assert str(config) in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_with_a_missing_config_file_exits_2(tmp_path: Path) -> None:
    result = run_cli("serve", "--config", str(tmp_path / "absent.toml"), env={}, cwd=tmp_path)

    assert result.returncode == 2
    assert "absent.toml" in result.stderr


def test_serve_exits_1_when_the_api_port_is_taken(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        environ = {
            "VOICEPLANE_API_LISTEN": f"127.0.0.1:{port}",
            "VOICEPLANE_SIP_LISTEN": f"127.0.0.1:{free_port()}",
        }
        result = run_cli("serve", env=environ, cwd=tmp_path)

    assert result.returncode == 1
    assert f"127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr


def test_version(tmp_path: Path) -> None:
    result = run_cli("version", env={}, cwd=tmp_path)

    assert result.returncode == 0
    assert result.stdout.strip() == f"voiceplane {__version__}"


@pytest.mark.sipp
@requires_sipp
@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_serve_answers_options_200_and_an_unserved_number_404(
    started: Running, tmp_path: Path, transport: Transport
) -> None:
    """The real process, with SIPp as the caller: OPTIONS gets 200, an INVITE 404."""
    wait_until_healthy(started)
    options = await SippClient(
        "uac_options", tmp_path / "options", started.sip_port, transport=transport
    ).run(10)
    options.assert_ok(calls=1)
    assert "INVITE" in (options.received(200)[0].header("Allow") or "")
    invite = await SippClient(
        "uac_expect_final", tmp_path / "invite", started.sip_port, transport=transport,
        values={"code": 404},
    ).run(10)  # fmt: skip
    invite.assert_ok(calls=1)
    assert invite.received(404) and invite.sent("ACK")
