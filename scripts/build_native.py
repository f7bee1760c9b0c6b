"""Compile the sans-IO SIP core with mypyc into ``.native/`` (see ``voiceplane.native``).

    .venv/bin/python scripts/build_native.py [--if-stale] [--quiet]

mypyc (shipped with mypy, a dev dependency) turns the typed modules into C extensions; it
needs a C compiler and the interpreter's headers. The build runs on a copy of the sources in
a temporary directory, so nothing lands in ``src``, and replaces ``.native`` only once it
succeeded, with a manifest of the sources it compiled: ``voiceplane.sip`` uses the compiled
modules only while those sources are unchanged. Exits non-zero, with mypyc's output, when
the build fails; the pure-Python modules keep working.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from voiceplane.native import (  # noqa: E402  (after the path: run as a script)
    COMPILED_MODULES,
    MANIFEST_NAME,
    default_root,
    inspect,
    interpreter_tag,
    source_digest,
)


def build(target: Path, *, quiet: bool) -> None:
    sources = ROOT / "src" / "voiceplane"
    mypyc = Path(sys.executable).with_name("mypyc")
    if not mypyc.exists():
        raise SystemExit(f"no mypyc beside {sys.executable}: install the dev tools (mypy)")
    with tempfile.TemporaryDirectory(prefix="voiceplane-native-") as scratch:
        work = Path(scratch)
        shutil.copytree(sources, work / "voiceplane",
                        ignore=shutil.ignore_patterns("__pycache__", "*.so"))  # fmt: skip
        files = [f"voiceplane/sip/{name}.py" for name in COMPILED_MODULES]
        started = time.monotonic()
        done = subprocess.run(
            [str(mypyc), *files], cwd=work, capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            sys.stderr.write(done.stdout + done.stderr)
            raise SystemExit(f"mypyc failed (exit {done.returncode})")
        staging = Path(tempfile.mkdtemp(prefix=".native-", dir=target.parent))
        try:
            _stage(work, staging)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        old = target.with_name(target.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        if target.exists():
            target.rename(old)
        staging.rename(target)
        shutil.rmtree(old, ignore_errors=True)
        if not quiet:
            print(f"compiled {len(COMPILED_MODULES)} SIP modules into {target} "
                  f"in {time.monotonic() - started:.0f} s")  # fmt: skip


def _stage(work: Path, staging: Path) -> None:
    """Lay out what mypyc built in ``work`` as ``voiceplane.native`` reads it."""
    staging.chmod(0o755)  # mkdtemp makes it private
    suffix = interpreter_tag()
    (staging / "voiceplane" / "sip").mkdir(parents=True)
    for library in work.glob(f"*__mypyc{suffix}"):  # the modules' shared library
        shutil.copy2(library, staging / library.name)
    for name in COMPILED_MODULES:
        built = work / "voiceplane" / "sip" / f"{name}{suffix}"
        shutil.copy2(built, staging / "voiceplane" / "sip" / built.name)
    manifest = {
        "interpreter": suffix,
        "modules": {
            # of the copies compiled, in case a source changed during the build
            name: source_digest(work / "voiceplane" / "sip" / f"{name}.py")
            for name in COMPILED_MODULES
        },
    }
    (staging / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--if-stale", action="store_true", help="do nothing when the build is up to date"
    )
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    root = default_root()
    if args.if_stale and inspect(root, ROOT / "src" / "voiceplane" / "sip").usable:
        return
    build(root, quiet=args.quiet)


if __name__ == "__main__":
    main()
