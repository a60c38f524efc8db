#!/usr/bin/env bash
# Set up the virtualenv (once per requirements change), lint, and run the test suite.
# Usage: bash scripts/test.sh [pytest args]. VENV picks the virtualenv (default: .venv).
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${VENV:-.venv}"
hash=$(cat requirements.txt requirements-dev.txt requirements-docs.txt | sha256sum | cut -c1-12)
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$venv/.requirements-hash" 2>/dev/null)" != "$hash" ]; then
  echo "Setting up $venv (requirements $hash)..."
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q -r requirements-dev.txt
  echo "$hash" >"$venv/.requirements-hash"
fi
"$venv/bin/python" -m ruff check .
"$venv/bin/python" -m pytest "$@"
