"""The ``voiceplane`` command, run as a real process."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner, Result

from tests.support.sipp import SippClient, Transport, requires_sipp
from voiceplane import __version__, cli
from voiceplane.api.app import create_app
from voiceplane.calls.status import Status
from voiceplane.config import load_config
from voiceplane.store import repository
from voiceplane.store.db import create_engine_for, migrate, session_factory
from voiceplane.store.models import Call, Leg, utcnow

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
            "VOICEPLANE_SANDBOX_LISTEN": f"127.0.0.1:{free_port()}",
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


# --- account, number, calls: straight to the store ---------------------------------------------


@pytest.fixture
def store_env(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The CLI's settings point at this test's database (SQLite or PostgreSQL), unmigrated."""
    for name in [name for name in os.environ if name.startswith("VOICEPLANE_")]:
        if name != "VOICEPLANE_TEST_POSTGRES_URL":
            monkeypatch.delenv(name)
    monkeypatch.setenv("VOICEPLANE_STORE_URL", database_url)
    monkeypatch.setenv("VOICEPLANE_DATA_DIR", str(tmp_path / "data"))
    return database_url


def invoke(*args: str) -> Result:
    result = CliRunner().invoke(cli.app, list(args))
    assert "Traceback" not in result.output
    assert not isinstance(result.exception, Exception) or isinstance(
        result.exception, SystemExit
    ), result.exception
    return result


def new_account(name: str = "Acme") -> dict[str, str]:
    result = invoke("account", "create", name, "--json")
    assert result.exit_code == 0, result.output
    created: dict[str, str] = json.loads(result.stdout)
    return created


def test_account_create_json_prints_a_sid_and_a_key_that_authenticate(store_env: str) -> None:
    created = new_account("Acme Ltd")

    assert set(created) == {"sid", "api_key"}
    engine = create_engine_for(store_env)
    try:
        with session_factory(engine).begin() as session:
            account = repository.authenticate(
                session, sid=created["sid"], api_key=created["api_key"]
            )
            assert account is not None and account.name == "Acme Ltd"
    finally:
        engine.dispose()


def test_account_create_without_json_is_readable_text(store_env: str) -> None:
    result = invoke("account", "create", "Globex")

    assert result.exit_code == 0
    assert "Created account Globex" in result.stdout
    assert re.search(r"SID\s+VP[0-9a-f]{20}", result.stdout)
    assert re.search(r"API key\s+vpk_\S{43}", result.stdout)


def test_account_create_refuses_an_empty_name(store_env: str) -> None:
    result = invoke("account", "create", "  ")

    assert result.exit_code == 2
    assert "must not be empty" in result.stderr


def test_account_create_uses_the_data_directory_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("VOICEPLANE_STORE_URL", raising=False)
    monkeypatch.setenv("VOICEPLANE_DATA_DIR", str(tmp_path / "data"))

    new_account()

    assert (tmp_path / "data" / "voiceplane.db").is_file()


def test_number_add_takes_as_many_channels_as_the_api_allows(store_env: str) -> None:
    sid = new_account()["sid"]

    result = invoke(
        "number", "add", "+918067000002", "--account", sid, "--channels", "100000", "--json"
    )

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["channels"] == 100_000


def test_number_add_registers_an_e164_number(store_env: str) -> None:
    sid = new_account()["sid"]

    result = invoke(
        "number", "add", "8067000001", "--prefix", "91", "--account", sid, "--kind", "did",
        "--channels", "4", "--json",
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "number": "+918067000001", "account": sid, "kind": "did", "channels": 4
    }  # fmt: skip
    engine = create_engine_for(store_env)
    try:
        with session_factory(engine).begin() as session:
            number = repository.get_number(session, e164="+918067000001")
            assert number is not None
            assert (number.kind, number.channels, number.account.sid) == ("did", 4, sid)
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (["12"], 2, "not a telephone number"),
        (["8067000001"], 2, "no country code"),
        (["+918067000001", "--kind", "mobile"], 2, "mobile"),
        (["+918067000001", "--channels", "-1"], 2, "channels"),
        (["+918067000001", "--channels", "100001"], 2, "channels"),
        (["+918067000001", "--account", "VPnobody"], 1, "no account 'VPnobody'"),
    ],
)
def test_number_add_errors_are_clear(
    store_env: str, args: list[str], code: int, words: str
) -> None:
    sid = new_account()["sid"]
    if "--account" not in args:
        args = [*args, "--account", sid]

    result = invoke("number", "add", *args)

    assert result.exit_code == code, result.output
    assert words in result.output


def test_number_add_twice_is_refused(store_env: str) -> None:
    first, second = new_account("A")["sid"], new_account("B")["sid"]
    assert invoke("number", "add", "+918067000001", "--account", first).exit_code == 0

    result = invoke("number", "add", "+918067000001", "--account", second)

    assert result.exit_code == 1
    assert "registered already" in result.stderr


def add_calls(url: str, sid: str) -> list[str]:
    engine = create_engine_for(url)
    try:
        with session_factory(engine).begin() as session:
            account = repository.get_account(session, sid=sid)
            assert account is not None
            first = repository.create_call(
                session, account=account, service="outbound", to_number="+919812345678",
                bridge="+918067000001",
            )  # fmt: skip
            second = repository.create_call(
                session, account=account, service="click2call", from_number="+919876543210",
                to_number="+919812345679", state="completed", status=Status.BUSY_LEG2.value,
            )  # fmt: skip
            return [first.id, second.id]
    finally:
        engine.dispose()


def test_calls_lists_recent_calls_as_a_table(store_env: str) -> None:
    mine, theirs = new_account("A")["sid"], new_account("B")["sid"]
    outbound, click = add_calls(store_env, mine)
    other, _ = add_calls(store_env, theirs)

    everyone = invoke("calls")
    only_mine = invoke("calls", "--account", mine, "--limit", "1")

    assert everyone.exit_code == 0, everyone.output
    lines = everyone.stdout.splitlines()
    assert lines[0].split()[:3] == ["created", "(UTC)", "id"]
    assert len(lines) == 5
    row = next(line for line in lines if click in line)
    assert {"click2call", "completed", Status.BUSY_LEG2.value, "+919876543210", mine} <= set(
        row.split()
    )
    assert only_mine.exit_code == 0
    assert [line.split()[2] for line in only_mine.stdout.splitlines()[1:]] == [click]
    assert other not in only_mine.stdout and outbound not in only_mine.stdout


def test_calls_with_no_calls_or_an_unknown_account(store_env: str) -> None:
    empty = invoke("calls")
    unknown = invoke("calls", "--account", "VPnobody")

    assert (empty.exit_code, empty.stdout.strip()) == (0, "No calls yet.")
    assert unknown.exit_code == 1
    assert "no account 'VPnobody'" in unknown.stderr


def test_a_bad_config_file_is_a_usage_error(tmp_path: Path) -> None:
    config = tmp_path / "voiceplane.toml"
    config.write_text("[store]\nurl = 'nonsense'\n")

    result = invoke("account", "create", "Acme", "--config", str(config))

    assert result.exit_code == 2
    assert "store.url" in result.stderr


# --- call: through the HTTP API of a running server ------------------------------------------


class ScriptedEngine:
    """Carries out a queued outbound call the way the engine would record it: dialing,
    ringing, then no answer (480) after a few polls."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions
        self.threads: list[threading.Thread] = []

    def call_queued(self, call_id: str) -> None:
        thread = threading.Thread(target=self._run, args=(call_id,), daemon=True)
        self.threads.append(thread)
        thread.start()

    def cancel_requested(self, call_id: str) -> None:
        return None

    def _run(self, call_id: str) -> None:
        self._step(call_id, lambda call, leg: {"state": "dialing"}, new_leg=True)
        ringing = frozenset({"ring_time"})
        self._step(call_id, lambda call, leg: {"state": "ringing"}, leg_fields=ringing)
        self._step(
            call_id,
            lambda call, leg: {"state": "completed", "status": Status.NOANSWER.value,
                               "reason": "no answer in 30 s", "duration": 30},
            leg_fields=frozenset({"end_time"}),
            leg_status=Status.NOANSWER.value,
        )  # fmt: skip

    def _step(
        self,
        call_id: str,
        changes: Callable[[Call, Leg | None], dict[str, Any]],
        *,
        new_leg: bool = False,
        leg_fields: frozenset[str] = frozenset(),
        leg_status: str | None = None,
    ) -> None:
        time.sleep(0.3)
        now = utcnow()
        with self.sessions.begin() as session:
            call = repository.find_call(session, call_id=call_id)
            assert call is not None and call.to_number is not None
            if new_leg:
                repository.record_leg(session, call=call, leg=1, number=call.to_number,
                                      start_time=now)  # fmt: skip
            leg = repository.get_leg(call, 1)
            assert leg is not None
            if leg_fields:
                fields: dict[str, Any] = {name: now for name in leg_fields}
                if leg_status is not None:
                    fields.update(status=leg_status, sip_code=480,
                                  sip_reason="Temporarily Unavailable", hangup_by="callee")
                repository.update_leg(session, leg=leg, **fields)  # fmt: skip
            repository.update_call(session, call=call, **changes(call, leg))


@dataclass
class LiveApi:
    url: str
    sid: str
    key: str
    engine: ScriptedEngine


@pytest.fixture
def live_api(store_env: str, tmp_path: Path) -> Iterator[LiveApi]:
    """The API app served by uvicorn on a loopback port, over this test's store."""
    migrate(store_env)
    engine = create_engine_for(store_env)
    sessions = session_factory(engine)
    with sessions.begin() as session:
        account, key = repository.create_account(session, name="Acme")
        repository.add_number(session, account=account, e164="+918067000001", kind="bridge")
        sid = account.sid
    scripted = ScriptedEngine(sessions)
    config = load_config(None, {"VOICEPLANE_DATA_DIR": str(tmp_path / "data")})
    app = create_app(config, ready=lambda: True, sessions=sessions, commands=scripted)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + READY_WITHIN_S
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield LiveApi(f"http://127.0.0.1:{port}", sid, key, scripted)
    finally:
        server.should_exit = True
        thread.join(EXIT_WITHIN_S)
        for worker in scripted.threads:
            worker.join(EXIT_WITHIN_S)
        engine.dispose()


def call_args(api: LiveApi, *extra: str, key: str | None = None) -> list[str]:
    return [
        "call", "+919812345678", "--bridge", "+918067000001", "--account", api.sid,
        "--api-key", key or api.key, "--api", api.url, "--poll", "0.05", *extra,
    ]  # fmt: skip


def test_call_places_a_call_and_watches_it_until_it_completes(live_api: LiveApi) -> None:
    result = invoke(*call_args(live_api, "--target", "Hello"))

    assert result.exit_code == 0, result.output
    out = result.stdout
    assert re.search(r"Placed call VC[0-9a-f]+ \(outbound\)", out)
    expected = [
        "call queued",
        "leg 1 +919812345678: dialing",
        "call dialing",
        "leg 1 +919812345678: ringing",
        "leg 1 +919812345678: ended NOANSWER (SIP 480 Temporarily Unavailable, hung up by "
        "callee)",
        "call completed",
        "status NOANSWER after 30 s (0 s talking); no answer in 30 s",
    ]
    positions = [out.find(line) for line in expected]
    assert -1 not in positions, out
    assert positions == sorted(positions), out


def test_call_takes_the_account_and_key_from_the_environment(
    live_api: LiveApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VOICEPLANE_ACCOUNT_SID", live_api.sid)
    monkeypatch.setenv("VOICEPLANE_API_KEY", live_api.key)

    result = invoke(
        "call", "+919812345678", "--from", "+919876543210", "--bridge", "+918067000001",
        "--api", live_api.url, "--no-watch",
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    assert re.fullmatch(r"VC[0-9a-f]+\n", result.stdout)


@pytest.mark.parametrize(
    ("extra", "key", "words"),
    [
        ((), "vpk_wrong", "the API refused the call (401): the API key is not valid"),
        (("--prefix", "999"), None, "(400): +999 is not a country calling code (field prefix)"),
        (("--target", "missing.wav"), None, "no audio file"),
    ],
)
def test_call_reports_the_apis_refusal_and_exits_1(
    live_api: LiveApi, extra: tuple[str, ...], key: str | None, words: str
) -> None:
    result = invoke(*call_args(live_api, *extra, key=key))

    assert result.exit_code == 1, result.output
    assert words in result.stderr
    assert live_api.engine.threads == []


def test_call_to_a_number_the_api_cannot_read_names_the_field(live_api: LiveApi) -> None:
    args = call_args(live_api)
    args[1] = "9812345678"

    result = invoke(*args)

    assert result.exit_code == 1
    assert "has no country code" in result.stderr and "(field to)" in result.stderr


def test_call_without_a_server_says_so(store_env: str) -> None:
    port = free_port()
    result = invoke(
        "call", "+919812345678", "--bridge", "+918067000001", "--account", "VPx",
        "--api-key", "k", "--api", f"http://127.0.0.1:{port}",
    )  # fmt: skip

    assert result.exit_code == 1
    assert f"cannot reach the API at http://127.0.0.1:{port}" in result.stderr
    assert "voiceplane serve running?" in result.stderr


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--from", "+919876543210", "--target", "hi", "--account", "VPx", "--api-key", "k"],
         "--target is for outbound calls"),
        (["--api-key", "k"], "--account"),
    ],
)  # fmt: skip
def test_call_usage_errors_exit_2(
    store_env: str, monkeypatch: pytest.MonkeyPatch, args: list[str], words: str
) -> None:
    monkeypatch.delenv("VOICEPLANE_ACCOUNT_SID", raising=False)

    result = invoke("call", "+919812345678", "--bridge", "+918067000001", *args)

    assert result.exit_code == 2
    assert words in result.output


def test_call_through_a_running_serve_and_its_sandbox_operator(
    started: Running, tmp_path: Path
) -> None:
    """The whole path: CLI -> HTTP API -> engine -> SIP -> sandbox operator, which answers a
    number ending in 486 with 486 Busy Here."""
    wait_until_healthy(started)
    env = {
        "VOICEPLANE_DATA_DIR": str(tmp_path / "data"),
        "VOICEPLANE_API_LISTEN": f"127.0.0.1:{started.api_port}",
    }
    created = run_cli("account", "create", "Acme", "--json", env=env, cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    account = json.loads(created.stdout)
    added = run_cli("number", "add", "+918067000001", "--account", account["sid"], env=env,
                    cwd=tmp_path)  # fmt: skip
    assert added.returncode == 0, added.stderr
    call = ["call", "+919812345486", "--bridge", "+918067000001", "--account", account["sid"],
            "--wait", "20"]  # fmt: skip

    busy = run_cli(*call, "--api-key", account["api_key"], env=env, cwd=tmp_path)
    refused = run_cli(*call, "--api-key", "vpk_wrong", env=env, cwd=tmp_path)

    assert busy.returncode == 0, busy.stdout + busy.stderr + started.output()
    assert "leg 1 +919812345486: ended BUSY (SIP 486 Busy Here" in busy.stdout
    assert f"status {Status.BUSY.value} " in busy.stdout
    assert refused.returncode == 1
    assert "the API refused the call (401)" in refused.stderr
    assert "Traceback" not in busy.stderr + refused.stderr + started.output()
