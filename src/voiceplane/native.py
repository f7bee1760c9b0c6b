"""The compiled SIP core: where it is, whether it may be used, and how it is imported.

``scripts/build_native.py`` compiles the sans-IO SIP modules with mypyc (part of mypy) into
``.native/`` beside ``src/``, with a manifest of the sources it compiled. At 300
click-to-calls/s the compiled core cut serve's event loop from 2.45 to 2.0 ms of CPU a call
and the sandbox operator's from 1.5 to 1.1 ms (README, "Calls through the API").

The compiled modules are used only if every one of them was built from the source now in
``src`` and for this interpreter: a module edited since the build would otherwise run as
its old self. When they cannot be used, the pure-Python modules are, with one warning in the
log. ``VOICEPLANE_NATIVE`` chooses: ``auto`` (the default: compiled when usable), ``off``
(always pure Python), ``require`` (compiled, or the import fails: the test suite runs this
way, so that what is tested is what runs).

Standard library only: ``voiceplane.sip`` imports this before anything else.
"""

from __future__ import annotations

import enum
import hashlib
import json
import logging
import os
import sys
import sysconfig
from collections.abc import Mapping, MutableSequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

__all__ = [
    "COMPILED_MODULES",
    "ENV_VAR",
    "MANIFEST_NAME",
    "NativeMode",
    "NativeState",
    "NativeUnavailable",
    "default_root",
    "inspect",
    "interpreter_tag",
    "mode_from_env",
    "source_digest",
    "use_native",
]

log = logging.getLogger(__name__)

ENV_VAR: Final = "VOICEPLANE_NATIVE"
MANIFEST_NAME: Final = "manifest.json"
# The modules compiled: the sans-IO core. Not ``digest`` (a challenge now and then), nor
# ``ua`` and ``transport``: compiled in a trial, they made no difference the noise let
# through (README, "Calls through the API").
COMPILED_MODULES: Final = (
    "addressing", "dialog", "endpoint", "errors", "headers", "legs", "message", "outcome",
    "sdp", "timers", "transaction", "uri",
)  # fmt: skip


class NativeMode(enum.Enum):
    AUTO = "auto"
    OFF = "off"
    REQUIRE = "require"


class NativeUnavailable(ImportError):
    """``VOICEPLANE_NATIVE=require`` and the compiled core cannot be used."""


@dataclass(frozen=True)
class NativeState:
    """What ``inspect`` found: ``usable``, or why not (``reason``)."""

    usable: bool
    reason: str
    root: Path


def mode_from_env(environ: Mapping[str, str] = os.environ) -> NativeMode:
    value = environ.get(ENV_VAR, "auto").strip().lower() or "auto"
    try:
        return NativeMode(value)
    except ValueError:
        choices = ", ".join(mode.value for mode in NativeMode)
        raise ValueError(f"{ENV_VAR}={value!r}: expected one of {choices}") from None


def default_root() -> Path:
    """``.native`` beside ``src``: where the build script puts it in a source checkout."""
    return Path(__file__).resolve().parents[2] / ".native"


def source_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def interpreter_tag() -> str:
    """The compiled modules' ABI: they load only into the interpreter they were built for."""
    return str(sysconfig.get_config_var("EXT_SUFFIX") or "")


def inspect(root: Path, sources: Path) -> NativeState:
    """Whether the build in ``root`` matches the sources in ``sources`` (the ``sip``
    package's directory) and this interpreter."""
    manifest_path = root / MANIFEST_NAME
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return NativeState(False, f"no compiled SIP core in {root}", root)
    except (OSError, ValueError) as exc:
        return NativeState(False, f"unreadable {manifest_path}: {exc}", root)
    if not isinstance(manifest, dict) or not isinstance(manifest.get("modules"), dict):
        return NativeState(False, f"{manifest_path} is not a build manifest", root)
    if manifest.get("interpreter") != interpreter_tag():
        return NativeState(
            False,
            f"built for {manifest.get('interpreter')!r}, this interpreter is "
            f"{interpreter_tag()!r}",
            root,
        )
    modules: dict[str, object] = manifest["modules"]
    if set(modules) != set(COMPILED_MODULES):
        return NativeState(False, "built for another set of modules", root)
    # Whatever lies there gets imported, so nothing may but the modules checked below.
    suffix = interpreter_tag()
    built = (root / "voiceplane" / "sip").glob(f"*{suffix}")
    unknown = sorted({path.name[: -len(suffix)] for path in built} - set(COMPILED_MODULES))
    if unknown:
        return NativeState(False, f"compiled modules not in the manifest: {unknown}", root)
    for name in COMPILED_MODULES:
        source = sources / f"{name}.py"
        try:
            digest = source_digest(source)
        except OSError as exc:
            return NativeState(False, f"cannot read {source}: {exc}", root)
        if modules.get(name) != digest:
            return NativeState(False, f"{source.name} changed since the build", root)
        if not (root / "voiceplane" / "sip" / f"{name}{suffix}").is_file():
            return NativeState(False, f"the compiled {name} module is missing", root)
    return NativeState(True, "compiled SIP core up to date", root)


def use_native(
    package_path: MutableSequence[str],
    *,
    environ: Mapping[str, str] = os.environ,
    root: Path | None = None,
) -> bool:
    """Put the compiled modules ahead of the sources on ``voiceplane.sip``'s
    ``__path__`` when they may be used; returns whether they are."""
    mode = mode_from_env(environ)
    if mode is NativeMode.OFF:
        return False
    found_root = root if root is not None else default_root()
    state = inspect(found_root, Path(package_path[0]))
    if not state.usable:
        if mode is NativeMode.REQUIRE:
            raise NativeUnavailable(
                f"{ENV_VAR}=require but {state.reason}; run scripts/build_native.py"
            )
        if (found_root / MANIFEST_NAME).exists():
            log.warning("using the pure-Python SIP core: %s (run scripts/build_native.py)",
                        state.reason)  # fmt: skip
        return False
    # The modules share one library of mypyc's, imported by its own top-level name.
    if str(found_root) not in sys.path:
        sys.path.append(str(found_root))
    package_path.insert(0, str(found_root / "voiceplane" / "sip"))
    return True
