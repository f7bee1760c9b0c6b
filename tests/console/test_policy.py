"""``voiceplane account settings``, ``number settings`` and ``blocklist`` on a real store."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from voiceplane import cli

BRIDGE = "+918047100000"


@pytest.fixture(autouse=True)
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


def as_json(*args: str) -> Any:
    result = invoke(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def account() -> str:
    sid: str = as_json("account", "create", "Acme")["sid"]
    assert invoke("number", "add", BRIDGE, "--account", sid).exit_code == 0
    return sid


def test_account_settings_show_and_change() -> None:
    sid = account()
    shown = as_json("account", "settings", sid)
    assert shown["countries"] is None and "premium_rate" not in shown["number_types"]
    changed = as_json(
        "account", "settings", sid, "--countries", "in,us", "--no-international",
        "--promotional", "--block-outgoing", "--dnd-category", "3",
    )  # fmt: skip
    assert changed == shown | {
        "countries": ["IN", "US"],
        "international": False,
        "promotional": True,
        "block_outgoing": True,
        "dnd_category": 3,
    }
    again = as_json("account", "settings", sid, "--countries", "any", "--transactional")
    assert again["countries"] is None and again["promotional"] is False
    assert again["block_outgoing"] is True  # not named: kept
    text = invoke("account", "settings", sid)
    assert text.exit_code == 0 and "block_outgoing" in text.stdout


def test_a_bad_setting_names_its_option_and_changes_nothing() -> None:
    sid = account()
    before = as_json("account", "settings", sid)
    result = invoke("account", "settings", sid, "--countries", "IN", "--number-types", "cell")
    assert result.exit_code == 2
    assert "--number-types" in result.stderr and "cell" in result.stderr
    assert as_json("account", "settings", sid) == before
    result = invoke("account", "settings", "VPnope", "--countries", "IN")
    assert result.exit_code == 1 and "no account" in result.stderr


def test_number_settings() -> None:
    sid = account()
    shown = as_json("number", "settings", BRIDGE, "--blocked-networks", "Airtel")
    assert shown["account"] == sid and shown["blocked_networks"] == ["airtel"]
    assert as_json("number", "settings", "8047100000", "--prefix", "91") == shown
    result = invoke("number", "settings", "+918047100099", "--countries", "IN")
    assert result.exit_code == 1 and "not registered" in result.stderr


def test_blocklist_add_list_remove() -> None:
    sid = account()
    result = invoke("blocklist", "add", "+919876500001", "9876500002", "--prefix", "91", "-a", sid)
    assert result.exit_code == 0, result.output
    assert "Added 2 of 2" in result.stdout
    listed = as_json("blocklist", "list", "--account", sid)
    assert listed == {"total": 2, "numbers": ["+919876500001", "+919876500002"]}
    assert invoke("blocklist", "remove", "+919876500001", "-a", sid).exit_code == 0
    assert as_json("blocklist", "list", "-a", sid)["numbers"] == ["+919876500002"]
    result = invoke("blocklist", "add", "12", "-a", sid)
    assert result.exit_code == 2
