#!/usr/bin/env bash
# One command for the benchmark against restic and borg (not part of the test suite):
#   bash bench/run.sh [--size tiny|quick|full] [--runs N] [--datasets a,b|all] [--cores 1,2] ...
# Installs restic, borg 1.2, virtnbdbackup (Debian), borg 1.4 and py-spy (PyPI, own venvs)
# with bench/setup.sh, strongroom with scripts/setup.sh, then runs bench/harness.py with the
# arguments given (see its --help and docs/benchmarks.md).
set -euo pipefail
cd "$(dirname "$0")/.."

bash bench/setup.sh
bash scripts/setup.sh
exec .venv/bin/python bench/harness.py "$@"
