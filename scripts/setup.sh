#!/usr/bin/env bash
# Install everything strongroom's demo and test suite need on a fresh Debian machine (as root):
# system packages, a virtualenv in .venv with strongroom and its test tools, and Azurite.
# Idempotent and quick when everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(qemu-utils libnbd-bin acl attr libcap2-bin e2fsprogs dosfstools mtools fdisk gdisk)
# files inside image points: the tests build disks with the real tools
APT_PACKAGES+=(lvm2 cryptsetup-bin xfsprogs btrfs-progs exfatprogs exfat-fuse ntfs-3g)
# shell completion tests run real bash and zsh
APT_PACKAGES+=(zsh bash-completion)
# dashboard browser tests: Debian's headless chromium, driven by playwright (no `playwright install`)
APT_PACKAGES+=(chromium)
# strongroom mount: fusermount3 and libfuse 3 (its library is libfuse3-3 on Debian 12,
# libfuse3-4 on Debian 13: fuse3 brings the right one)
APT_PACKAGES+=(fuse3)
# libvirt provider and its tests: libvirtd + qemu (TCG guests), and what building
# libvirt-python from PyPI needs (the test guest's kernel, busybox and qemu-ga are fetched
# with `apt-get download` by tests/libvirt/guest.py and cached, not installed).
APT_PACKAGES+=(qemu-system-x86 libvirt-daemon-system libvirt-dev pkg-config gcc)
# Argon2id built for this CPU (below): argon2-cffi-bindings builds with CMake
APT_PACKAGES+=(cmake)
# the server's catalog on PostgreSQL: the tests start their own cluster with initdb + pg_ctl
APT_PACKAGES+=(postgresql)

missing=()
need() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "ok installed" || missing+=("$1"); }
for pkg in "${APT_PACKAGES[@]}"; do need "$pkg"; done
# Node and a venv-capable Python may come from elsewhere (nodesource, pyenv): accept them.
command -v node >/dev/null && command -v npm >/dev/null || { need nodejs; need npm; }
# The venv's interpreter: Debian's own build of the Python version on PATH when the machine has
# one. Debian builds it with profile-guided and link-time optimisation and links libpython into
# the executable; a pyenv build (as on these machines) has neither: a pure-Python loop took
# 50 % longer, first backups of small files 10-17 % (docs/architecture.md, "The interpreter").
python=$(command -v python3 || true)
version=$([ -n "$python" ] && "$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])' || true)
if [ -n "$version" ] && [ -x "/usr/bin/python$version" ]; then
  python=/usr/bin/python$version
  need "python$version-venv"
  need "python$version-dev"  # building libvirt-python needs the headers of the venv's Python
elif [ -n "$python" ]; then
  "$python" -c 'import ensurepip, venv' 2>/dev/null || need python3-venv
  "$python" -c 'import os, sysconfig; exit(not os.path.exists(sysconfig.get_paths()["include"] + "/Python.h"))' \
    2>/dev/null || need python3-dev
else  # no Python at all: Debian's
  python=/usr/bin/python3
  need python3-venv
  need python3-dev
fi
if ((${#missing[@]})); then
  echo "setup: apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# a venv made from another interpreter (an earlier set-up's choice) is made again; compared by
# base prefix, since a pyenv shim's directory is not the one the venv records
base() { "$1" -c 'import sys; print(sys.base_prefix)' 2>/dev/null || true; }
if [ -x .venv/bin/python ] && [ "$(base .venv/bin/python)" != "$(base "$python")" ]; then
  echo "setup: .venv was made with another Python; making it again with $python"
  rm -rf .venv
fi
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
stamp=.venv/.strongroom-installed
stale=0
# the package's build: its metadata, and the compiled parts (built in place by pip -e)
for f in pyproject.toml setup.py src/strongroom/*/*.c; do
  [ "$f" -nt "$stamp" ] && stale=1
done
if [ ! -f "$stamp" ] || ((stale)); then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[test,libvirt,server,postgres]'
  touch "$stamp"
fi
# Argon2id for this CPU. PyPI's argon2-cffi-bindings wheel runs libargon2's SSE2 code on any
# x86-64; built from the same source with AVX2, it derives a passphrase's key (every command
# that opens a vault) in about 0.6x the CPU (docs/benchmarks.md, "Session 45"). Built on the
# machine that runs it, only where the CPU has AVX2, kept only if it computes RFC 9106's test
# vector, and built again when pip brings another version; otherwise PyPI's wheel stays.
argon2_stamp=.venv/.argon2-built
argon2_version=$(.venv/bin/python -c 'import importlib.metadata as m; print(m.version("argon2-cffi-bindings"))')
if grep -qw avx2 /proc/cpuinfo && [ "$(cat "$argon2_stamp" 2>/dev/null)" != "$argon2_version" ]; then
  echo "setup: building argon2-cffi-bindings $argon2_version for AVX2"
  argon2_pip=(.venv/bin/python -m pip install -q --no-cache-dir --no-deps --force-reinstall)
  if ! CFLAGS="-O3 -mavx2" "${argon2_pip[@]}" --no-binary argon2-cffi-bindings \
      "argon2-cffi-bindings==$argon2_version" >/dev/null 2>&1 ||
    ! .venv/bin/python -c 'from strongroom.vault.kdf import check_build; exit(not check_build())'; then
    echo "setup: that build failed or computed a wrong hash; keeping PyPI's wheel"
    "${argon2_pip[@]}" --only-binary argon2-cffi-bindings "argon2-cffi-bindings==$argon2_version"
  fi
  echo "$argon2_version" >"$argon2_stamp"
fi

# Bytecode for the package's own modules: pip compiles what it installs, but an editable
# install runs from src/, and where PYTHONDONTWRITEBYTECODE is set (as on these machines)
# every command would compile its ~150 modules again (0.09 s of each command's start-up).
# Up-to-date files are skipped; a source changed later is compiled in memory until the next run.
.venv/bin/python -m compileall -q -j 0 src/strongroom >/dev/null

if [ ! -x .tools/node_modules/.bin/azurite-blob ]; then
  echo "setup: npm install azurite"
  npm install --silent --no-audit --no-fund --prefix .tools azurite >/dev/null
fi
echo "setup: ready"
