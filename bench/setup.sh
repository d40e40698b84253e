#!/usr/bin/env bash
# The benchmark's own tools (not the test suite's): Debian's restic 0.14, borg 1.2 and
# virtnbdbackup, the newest borg 1.4 from PyPI in its own venv, and py-spy in the bench venv.
# Idempotent; run by bench/run.sh.  BENCH_OPT (default /opt/strongroom-bench) holds the venvs.
set -euo pipefail
cd "$(dirname "$0")/.."
OPT=${BENCH_OPT:-/opt/strongroom-bench}

# restic/borg: the peers; virtnbdbackup: the libvirt peer (bench/libvirt_vs_virtnbdbackup.py);
# the -dev packages and gcc build borgbackup 1.4 from its source distribution
APT_PACKAGES=(restic borgbackup virtnbdbackup python3-venv python3-dev gcc pkg-config
  libacl1-dev liblz4-dev libzstd-dev libxxhash-dev libssl-dev)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "bench setup: apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

mkdir -p "$OPT"
if [ ! -x "$OPT/borg14/bin/borg" ]; then
  echo "bench setup: borgbackup 1.4 into $OPT/borg14"
  /usr/bin/python3 -m venv "$OPT/borg14"
  "$OPT/borg14/bin/pip" install -q --upgrade pip
  "$OPT/borg14/bin/pip" install -q 'borgbackup>=1.4,<1.5'
fi
if [ ! -x "$OPT/venv/bin/py-spy" ]; then
  echo "bench setup: py-spy into $OPT/venv"
  /usr/bin/python3 -m venv "$OPT/venv"
  "$OPT/venv/bin/pip" install -q py-spy
fi
echo "bench setup: ready (borg $("$OPT/borg14/bin/borg" --version), $("$OPT/venv/bin/py-spy" --version))"
