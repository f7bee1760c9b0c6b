"""When the compiled SIP core is used: built from these very sources, for this interpreter,
and as ``VOICEPLANE_NATIVE`` asks."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

import voiceplane.sip
from voiceplane.native import (
    COMPILED_MODULES,
    ENV_VAR,
    MANIFEST_NAME,
    NativeMode,
    NativeUnavailable,
    inspect,
    interpreter_tag,
    mode_from_env,
    source_digest,
    use_native,
)

SOURCES = Path(voiceplane.sip.__file__).parent


def fake_build(
    root: Path, sources: Path = SOURCES, manifest_changes: dict[str, object] | None = None
) -> Path:
    """A ``.native`` tree as the build script lays it out (empty files for the modules:
    only ``inspect`` looks at them here)."""
    (root / "voiceplane" / "sip").mkdir(parents=True)
    for name in COMPILED_MODULES:
        (root / "voiceplane" / "sip" / f"{name}{interpreter_tag()}").write_bytes(b"")
    manifest: dict[str, object] = {
        "interpreter": interpreter_tag(),
        "modules": {name: source_digest(sources / f"{name}.py") for name in COMPILED_MODULES},
    }
    manifest.update(manifest_changes or {})
    (root / MANIFEST_NAME).write_text(json.dumps(manifest))
    return root


def copy_of_sources(tmp_path: Path) -> Path:
    target = tmp_path / "src"
    target.mkdir()
    for name in COMPILED_MODULES:
        (target / f"{name}.py").write_bytes((SOURCES / f"{name}.py").read_bytes())
    return target


def test_a_build_of_these_sources_is_usable(tmp_path: Path) -> None:
    state = inspect(fake_build(tmp_path / "native"), SOURCES)
    assert state.usable, state.reason


def test_a_source_edited_after_the_build_makes_it_unusable(tmp_path: Path) -> None:
    sources = copy_of_sources(tmp_path)
    root = fake_build(tmp_path / "native", sources)
    with (sources / "legs.py").open("a") as file:
        file.write("# edited\n")
    state = inspect(root, sources)
    assert not state.usable and state.reason == "legs.py changed since the build"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"interpreter": ".cpython-312-x86_64-linux-gnu.so"}, "built for '.cpython-312"),
        ({"modules": {}}, "another set of modules"),
        ({"modules": "all of them"}, "is not a build manifest"),
    ],
)
def test_a_build_for_something_else_is_unusable(
    tmp_path: Path, change: dict[str, object], reason: str
) -> None:
    state = inspect(fake_build(tmp_path / "native", manifest_changes=change), SOURCES)
    assert not state.usable and reason in state.reason


def test_a_build_with_a_module_more_is_unusable(tmp_path: Path) -> None:
    # A build of another set of modules (an older or newer version's): the extra one would
    # be imported unchecked.
    root = fake_build(tmp_path / "native")
    (root / "voiceplane" / "sip" / f"ua{interpreter_tag()}").write_bytes(b"")
    assert inspect(root, SOURCES).reason == "compiled modules not in the manifest: ['ua']"
    other = fake_build(tmp_path / "other", manifest_changes={"modules": {"ua": "x"}})
    assert inspect(other, SOURCES).reason == "built for another set of modules"


def test_a_missing_or_broken_build_is_unusable(tmp_path: Path) -> None:
    assert inspect(tmp_path / "none", SOURCES).reason.startswith("no compiled SIP core")
    root = fake_build(tmp_path / "native")
    (root / "voiceplane" / "sip" / f"uri{interpreter_tag()}").unlink()
    assert inspect(root, SOURCES).reason == "the compiled uri module is missing"
    (root / MANIFEST_NAME).write_text("{not json")
    assert "unreadable" in inspect(root, SOURCES).reason


def test_the_mode_comes_from_the_environment() -> None:
    assert mode_from_env({}) is NativeMode.AUTO
    assert mode_from_env({ENV_VAR: " OFF "}) is NativeMode.OFF
    assert mode_from_env({ENV_VAR: "require"}) is NativeMode.REQUIRE
    with pytest.raises(ValueError, match="expected one of auto, off, require"):
        mode_from_env({ENV_VAR: "yes"})


def test_use_native_puts_the_build_first_only_when_usable(tmp_path: Path) -> None:
    root = fake_build(tmp_path / "native")
    path = [str(SOURCES)]
    assert use_native(path, environ={ENV_VAR: "off"}, root=root) is False
    assert path == [str(SOURCES)]
    assert use_native(path, environ={}, root=root) is True
    assert path == [str(root / "voiceplane" / "sip"), str(SOURCES)]
    sys.path.remove(str(root))  # use_native put the shared library's folder there


def test_require_refuses_an_unusable_build_and_auto_falls_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = fake_build(tmp_path / "native", manifest_changes={"interpreter": "elsewhere"})
    path = [str(SOURCES)]
    with pytest.raises(NativeUnavailable, match="require but built for 'elsewhere'"):
        use_native(path, environ={ENV_VAR: "require"}, root=root)
    assert use_native(path, environ={ENV_VAR: "auto"}, root=root) is False
    assert path == [str(SOURCES)]
    assert "using the pure-Python SIP core: built for 'elsewhere'" in caplog.text


def test_the_modules_this_process_runs_are_the_ones_asked_for() -> None:
    # The suite runs with VOICEPLANE_NATIVE=require (scripts/test.sh): the compiled modules.
    # Run with =off, the same tests run the sources.
    mode = mode_from_env()
    import voiceplane.sip.legs as legs
    import voiceplane.sip.ua as ua

    assert ua.__file__ is not None and ua.__file__.endswith("ua.py")  # never compiled
    if mode is NativeMode.REQUIRE:
        assert legs.__file__ is not None and legs.__file__.endswith(interpreter_tag())
    elif mode is NativeMode.OFF:
        assert legs.__file__ is not None and legs.__file__.endswith("legs.py")
