"""``voiceplane sandbox``, run as a real process: it serves calls and stops cleanly on a signal."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from tests.support.sipp import SippClient, free_port, requires_sipp

READY_WITHIN_S = 20.0
EXIT_WITHIN_S = 10.0


def voiceplane_bin() -> Path:
    path = Path(sys.executable).parent / "voiceplane"
    assert path.exists(), f"{path} is missing: run .venv/bin/pip install -e '.[dev]'"
    return path


def environ(overrides: Mapping[str, str]) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("VOICEPLANE_")}
    return {**clean, **overrides}


@pytest.fixture
def sandbox_process(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int, Path]]:
    port = free_port("both")
    log = tmp_path / "sandbox.log"
    config = tmp_path / "voiceplane.toml"
    config.write_text(
        f'[sandbox]\nlisten = "127.0.0.1:{port}"\nreject_after_ms = 50\n'
        '[[sandbox.rules]]\nmatch = "+15550100"\ncode = 603\n'
    )
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [str(voiceplane_bin()), "sandbox", "--config", str(config)],
            cwd=tmp_path, env=environ({}), stdout=sink, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        yield process, port, log
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def wait_until_listening(process: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + READY_WITHIN_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"voiceplane sandbox exited early:\n{log.read_text()}")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    pytest.fail(f"not listening within {READY_WITHIN_S} s:\n{log.read_text()}")


@pytest.mark.sipp
@requires_sipp
@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM])
async def test_sandbox_command_serves_calls_until_a_signal(
    sandbox_process: tuple[subprocess.Popen[bytes], int, Path],
    tmp_path: Path,
    stop_signal: signal.Signals,
) -> None:
    process, port, log = sandbox_process
    wait_until_listening(process, port, log)

    busy = await SippClient("uac_expect_final", tmp_path / "busy", port, service="+15550486",
                            values={"code": 486}).run(10)  # fmt: skip
    ruled = await SippClient("uac_expect_final", tmp_path / "rule", port, transport="tcp",
                             service="+15550100", values={"code": 603}).run(10)  # fmt: skip
    process.send_signal(stop_signal)
    try:
        code = process.wait(timeout=EXIT_WITHIN_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"still running {EXIT_WITHIN_S} s after {stop_signal.name}")

    busy.assert_ok(calls=1)
    assert busy.received(486)[0].header("Reason") == "Q.850;cause=17"
    ruled.assert_ok(calls=1)
    assert ruled.received(603)[0].header("Reason") == "Q.850;cause=21"
    output = log.read_text()
    assert code == 0, output
    assert f"127.0.0.1:{port};transport=udp" in output
    assert "1 rule(s)" in output
    assert "Traceback" not in output


def run_sandbox_command(
    *args: str, env: Mapping[str, str], cwd: Path
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(voiceplane_bin()), "sandbox", *args],
        env=environ(env), cwd=cwd, capture_output=True, text=True, timeout=30,
    )  # fmt: skip


def test_bad_rule_exits_2_naming_the_key_and_the_variable(tmp_path: Path) -> None:
    result = run_sandbox_command(
        env={"VOICEPLANE_SANDBOX_RULES": '[{ suffix = "486", code = 200 }]'}, cwd=tmp_path
    )

    assert result.returncode == 2
    assert "sandbox.rules[0][code]" in result.stderr
    assert "VOICEPLANE_SANDBOX_RULES" in result.stderr
    assert "Traceback" not in result.stderr


def test_taken_port_exits_1_with_a_clear_message(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        result = run_sandbox_command(
            env={"VOICEPLANE_SANDBOX_LISTEN": f"127.0.0.1:{port}"}, cwd=tmp_path
        )

    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr
