#!/usr/bin/env bash
# One command for the benchmark against restic and borg (not part of the test suite):
#   bash bench/run.sh [--quick] [--runs N] [--only image|tree|sparse] [--workdir DIR] ...
# Installs restic and borgbackup with apt-get when missing, strongroom with scripts/setup.sh,
# then runs bench/harness.py with the arguments given (see its --help).
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
for pkg in restic borgbackup; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "bench: apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

bash scripts/setup.sh
exec .venv/bin/python bench/harness.py "$@"
