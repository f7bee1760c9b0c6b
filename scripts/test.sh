#!/usr/bin/env bash
# Sets up and runs the whole test suite, SIPp conformance tests included, and the store's
# tests on PostgreSQL too (a private server that scripts/postgres.sh starts).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
VOICEPLANE_TEST_POSTGRES_URL="$(./scripts/postgres.sh)"
export VOICEPLANE_TEST_POSTGRES_URL
.venv/bin/ruff check src tests bench scripts
.venv/bin/mypy
# The suite runs the compiled SIP core that setup built (VOICEPLANE_NATIVE=require: what is
# tested is what runs); the core's own unit tests run on its Python sources first.
VOICEPLANE_NATIVE=off .venv/bin/pytest -q -n "${VOICEPLANE_TEST_WORKERS:-2}" -m "not sipp" \
  "$@" tests/sip tests/test_native.py
# Two workers: the machine's two cores (VOICEPLANE_TEST_WORKERS=0 runs in one process).
VOICEPLANE_NATIVE="${VOICEPLANE_NATIVE:-require}" \
  exec .venv/bin/pytest -q -n "${VOICEPLANE_TEST_WORKERS:-2}" "$@"
