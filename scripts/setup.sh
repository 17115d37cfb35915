#!/usr/bin/env bash
# Creates .venv and installs paperlens with its test and Ray extras. Idempotent: a second run with an
# unchanged pyproject.toml returns in well under a second.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv

stamp=.venv/.paperlens-installed
want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    exit 0
fi

echo "paperlens: installing into .venv (first run takes a few minutes)" >&2
.venv/bin/python -m pip install -q --upgrade pip
# torch first, at the exact pin: this finds the CPU wheel; an open range would pull a
# multi-GB CUDA build that the rest of the install would then keep.
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".[test,ray]"
echo "$want" > "$stamp"
