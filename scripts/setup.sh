#!/usr/bin/env bash
# Installs what voiceplane and its tests need on a fresh Debian machine: the Debian packages
# (SIPp as Debian's sip-tester, espeak-ng and sox for prompts, rtpengine for the rtpengine
# media backend, run in userspace without its kernel module, and tcmalloc, which rtpengine is
# started with: README "IVR media, rtpengine backend") and a virtualenv in .venv with
# the project and its dev tools. Safe to run again; it skips what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

debs=(sip-tester espeak-ng sox rtpengine-daemon libtcmalloc-minimal4)
# A C compiler for the compiled SIP core (scripts/build_native.py).
command -v gcc >/dev/null || debs+=(gcc)
missing=()
for p in "${debs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
  # Tests start their own rtpengine on free ports; the services Debian starts are not used.
  if [ -d /run/systemd/system ]; then
    $sudo systemctl disable --now rtpengine-daemon rtpengine-recording-daemon 2>/dev/null || true
  fi
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[dev]"
# The SIP core compiled with mypyc (voiceplane.native); without it the pure-Python modules
# run, so a failed build only warns.
.venv/bin/python scripts/build_native.py --if-stale \
  || echo "setup: the compiled SIP core did not build; the pure-Python one will run" >&2
