"""``voiceplane account capacity`` and ``voiceplane number channels``, against the store."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from voiceplane import cli
from voiceplane.store import repository
from voiceplane.store.db import create_engine_for, session_factory

BRIDGE = "+918067000001"


@pytest.fixture
def store_env(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    for name in [name for name in os.environ if name.startswith("VOICEPLANE_")]:
        if name != "VOICEPLANE_TEST_POSTGRES_URL":
            monkeypatch.delenv(name)
    monkeypatch.setenv("VOICEPLANE_STORE_URL", database_url)
    monkeypatch.setenv("VOICEPLANE_DATA_DIR", str(tmp_path / "data"))
    return database_url


def invoke(*args: str) -> Result:
    result = CliRunner().invoke(cli.app, list(args))
    assert "Traceback" not in result.output
    return result


def as_json(result: Result) -> Any:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture
def sid(store_env: str) -> str:
    created = as_json(invoke("account", "create", "Acme", "--json"))
    assert invoke("number", "add", BRIDGE, "--account", created["sid"]).exit_code == 0
    return str(created["sid"])


def test_account_capacity_shows_then_changes_the_limits(sid: str, store_env: str) -> None:
    shown = as_json(invoke("account", "capacity", "--account", sid, "--json"))
    assert shown == {"account": sid, "channels": None, "max_cps": None, "numbers": {BRIDGE: 10}}
    changed = as_json(
        invoke("account", "capacity", "-a", sid, "--channels", "20", "--max-cps", "5", "--json")
    )
    assert (changed["channels"], changed["max_cps"]) == (20, 5)
    engine = create_engine_for(store_env)
    try:
        with session_factory(engine).begin() as session:
            account = repository.get_account(session, sid=sid)
            assert account is not None and (account.channels, account.max_cps) == (20, 5)
    finally:
        engine.dispose()
    back = as_json(
        invoke("account", "capacity", "-a", sid, "--unlimited", "--max-cps", "0", "--json")
    )
    assert (back["channels"], back["max_cps"]) == (None, None)
    text = invoke("account", "capacity", "-a", sid)
    assert "channels  unlimited" in text.stdout and f"{BRIDGE}  10 channels" in text.stdout


def test_account_capacity_refuses_bad_input(sid: str) -> None:
    assert invoke("account", "capacity", "-a", sid, "--channels", "-1").exit_code == 2
    both = invoke("account", "capacity", "-a", sid, "--channels", "3", "--unlimited")
    assert both.exit_code == 2 and "not both" in both.stderr
    unknown = invoke("account", "capacity", "-a", "VP00")
    assert unknown.exit_code == 1 and "no account" in unknown.stderr


def test_number_channels_changes_a_registered_number(sid: str) -> None:
    assert as_json(invoke("number", "channels", BRIDGE, "3", "--json")) == {
        "number": BRIDGE, "channels": 3,
    }  # fmt: skip
    shown = as_json(invoke("account", "capacity", "-a", sid, "--json"))
    assert shown["numbers"] == {BRIDGE: 3}
    missing = invoke("number", "channels", "+918067000099", "3")
    assert missing.exit_code == 1 and "not registered" in missing.stderr
    assert invoke("number", "channels", BRIDGE, "-4").exit_code == 2
