#!/usr/bin/env bash
# Sets up, then runs the test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/test-setup.sh
exec .venv/bin/python -m pytest "$@"
