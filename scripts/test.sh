#!/usr/bin/env bash
# The full test suite: setup, lint (ruff), types (mypy --strict), then every pytest test,
# including the Azurite and moto_server emulator tests and the slow crash tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PWD/.tools/node_modules/.bin:$PATH"
echo "== ruff"; ruff check src tests bench scripts && ruff format --check src tests bench scripts
echo "== mypy"; mypy
echo "== pytest"; python -m pytest -q -p no:cacheprovider "$@"
