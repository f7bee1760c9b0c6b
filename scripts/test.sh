#!/usr/bin/env bash
# Sets up and runs the whole test suite, SIPp conformance tests included.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
.venv/bin/ruff check src tests bench
.venv/bin/mypy
exec .venv/bin/pytest -q "$@"
