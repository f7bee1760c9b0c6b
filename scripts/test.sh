#!/usr/bin/env bash
# Sets up and runs the whole test suite, SIPp conformance tests included, and the store's
# tests on PostgreSQL too (a private server that scripts/postgres.sh starts).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
VOICEPLANE_TEST_POSTGRES_URL="$(./scripts/postgres.sh)"
export VOICEPLANE_TEST_POSTGRES_URL
.venv/bin/ruff check src tests bench
.venv/bin/mypy
exec .venv/bin/pytest -q "$@"
