#!/usr/bin/env bash
# Sets up and runs voiceplane on its embedded defaults (SQLite, in-process media, sandbox operator).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
exec .venv/bin/voiceplane serve "$@"
