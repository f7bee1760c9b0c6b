"""``voiceplane dnd import|check|stats``."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner, Result

from voiceplane import cli
from voiceplane.policy.dnd import DndRegistry


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli.app, list(args), env=env)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_import_check_and_stats(tmp_path: Path) -> None:
    data = tmp_path / "data"
    numbers = write(tmp_path, "dnd.csv", "number,categories\n9876543210,1|2\n+14155550100\n")
    imported = run("dnd", "import", str(numbers), "--country-code", "91", "--data-dir", str(data))
    assert imported.exit_code == 0, imported.output
    assert "generation 1 holds 2 numbers" in imported.output
    registry = DndRegistry.in_data_dir(data)
    assert registry.blocks("+919876543210", 3) and not registry.blocks("+919876543210", 2)

    partly = run("dnd", "check", "09876543210", "--country-code", "91", "--data-dir", str(data))
    assert partly.exit_code == 0
    assert "+919876543210 is on the DND registry: accepts promotional categories 1, 2" in (
        partly.output
    )
    fully = run("dnd", "check", "+14155550100", "--data-dir", str(data))
    assert "fully blocked" in fully.output
    absent = run("dnd", "check", "+14155550101", "--data-dir", str(data), "--json")
    assert json.loads(absent.output) == {
        "number": "+14155550101", "on_registry": False, "fully_blocked": False,
        "accepted_categories": [],
    }  # fmt: skip

    stats = run("dnd", "stats", "--data-dir", str(data), "--json")
    payload = json.loads(stats.output)
    assert (payload["count"], payload["generation"]) == (2, 1)
    assert payload["file_size"] > 0 and payload["path"].endswith("gen-000001.dnd")


def test_add_and_remove_report_their_counts_as_json(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    full = write(tmp_path, "full.txt", "+919876543210\n+919876543211\n")
    run("dnd", "import", str(full), "--data-dir", data)
    more = write(tmp_path, "more.txt", "+919876543211\n+919876543212\n")
    added = json.loads(run("dnd", "import", str(more), "--mode", "add", "--data-dir", data,
                           "--json").output)  # fmt: skip
    assert (added["generation"], added["count"], added["added"]) == (2, 3, 1)
    removed = json.loads(run("dnd", "import", str(full), "--mode", "remove", "--data-dir", data,
                             "--json").output)  # fmt: skip
    assert (removed["count"], removed["removed"]) == (1, 2)


def test_a_bad_line_fails_naming_it_and_imports_nothing(tmp_path: Path) -> None:
    data = tmp_path / "data"
    good = write(tmp_path, "good.txt", "+919876543210\n")
    run("dnd", "import", str(good), "--data-dir", str(data))
    bad = write(tmp_path, "bad.txt", "+919876543211\n\n+91987654321x\n")
    result = run("dnd", "import", str(good), str(bad), "--mode", "add", "--data-dir", str(data))
    assert result.exit_code == 1
    assert f"nothing imported: {bad}, line 3: '+91987654321x' is not a telephone number" in (
        result.output
    )
    assert DndRegistry.in_data_dir(data).stats().generation == 1


def test_usage_errors(tmp_path: Path) -> None:
    path = write(tmp_path, "a.txt", "+919876543210\n")
    data = str(tmp_path / "data")
    code = run("dnd", "import", str(path), "--country-code", "x1", "--data-dir", data)
    assert code.exit_code == 2 and "country calling code" in code.output
    mode = run("dnd", "import", str(path), "--mode", "replace", "--data-dir", data)
    assert mode.exit_code == 2
    number = run("dnd", "check", "98765", "--data-dir", data)
    assert number.exit_code == 2 and "5 digits" in number.output


def test_the_data_dir_comes_from_the_settings_by_default(tmp_path: Path) -> None:
    env = {"VOICEPLANE_DATA_DIR": str(tmp_path / "elsewhere")}
    path = write(tmp_path, "a.txt", "+919876543210\n")
    assert run("dnd", "import", str(path), env=env).exit_code == 0
    assert DndRegistry(tmp_path / "elsewhere" / "dnd").blocks("+919876543210")
    empty = run("dnd", "stats", env={"VOICEPLANE_DATA_DIR": str(tmp_path / "none")})
    assert "empty: nothing imported yet" in empty.output
