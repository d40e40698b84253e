"""A tiny real Linux guest for the libvirt tests: Debian's cloud kernel and a busybox initramfs.

The kernel comes from ``linux-image-cloud-amd64`` and the userland from ``busybox-static``
(both fetched with ``apt-get download`` and unpacked with ``dpkg-deb -x``); ``qemu-ga`` from
``qemu-guest-agent`` is copied in with the shared libraries it needs (the host's: same
Debian release).  The build is cached in ``~/.cache/strongroom-test-guest/KEY/`` where KEY
names the package versions and a hash of this file, so a new kernel or a changed init script
rebuilds it.  A build takes a few seconds; a boot under TCG about three.

The init script loads the virtio modules, mounts ``/dev/vdX`` at ``/mnt`` when the kernel
command line says ``sr_mount=vdX``, starts ``qemu-ga`` when an ``org.qemu.guest_agent.0``
port exists (its fsfreeze hook logs ``freeze``/``thaw`` to ``/var/log/fsfreeze.log``), then
serves the first serial port as a command channel: it reads ``SEQ COMMAND`` lines, runs each
with ``sh -c`` and prints the output followed by ``@@DONE SEQ RC@@``.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Final

CACHE: Final = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
CACHE_DIR: Final = CACHE / "strongroom-test-guest"
KERNEL_META: Final = "linux-image-cloud-amd64"
MODULES: Final = (
    "virtio_ring",
    "virtio",
    "virtio_pci_legacy_dev",
    "virtio_pci_modern_dev",
    "virtio_pci",
    "virtio_blk",
    "virtio_console",
)
READY: Final = "STRONGROOM-GUEST-READY"

INIT: Final = r"""#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin:/sbin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /run /tmp /mnt /var/log /var/run
for m in MODULES; do insmod /lib/modules/$m.ko 2>/dev/null; done
for arg in $(cat /proc/cmdline); do
  case "$arg" in sr_mount=*) mnt="${arg#sr_mount=}" ;; esac
done
n=0
while [ ! -e /dev/vda ] && [ $n -lt 100 ]; do sleep 0.05; n=$((n + 1)); done
if [ -n "$mnt" ]; then mount -t ext4 -o noatime "/dev/$mnt" /mnt; fi
for port in /sys/class/virtio-ports/*; do
  [ -e "$port/name" ] || continue
  if [ "$(cat "$port/name")" = org.qemu.guest_agent.0 ]; then
    /usr/sbin/qemu-ga -d -m virtio-serial -p "/dev/${port##*/}" -t /run \
      -l /var/log/qemu-ga.log -F/etc/fsfreeze-hook
  fi
done
stty -F /dev/ttyS0 -echo -onlcr
exec </dev/ttyS0 >/dev/ttyS0 2>&1
echo READY
while true; do
  while read -r seq cmd; do
    sh -c "$cmd" >/tmp/out 2>&1
    rc=$?
    cat /tmp/out
    echo "@@DONE $seq $rc@@"
  done
  sleep 0.1
done
""".replace("MODULES", " ".join(MODULES)).replace("READY", READY)

HOOK: Final = """#!/bin/sh
echo "$1 $(cut -d' ' -f1 /proc/uptime)" >> /var/log/fsfreeze.log
"""


@dataclass(frozen=True)
class GuestImage:
    kernel: Path
    initrd: Path


def _run(*args: str | Path, cwd: Path | None = None) -> str:
    proc = subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, cwd=cwd, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{args[0]} failed ({proc.returncode}): {proc.stderr}{proc.stdout}")
    return proc.stdout


def _show(package: str) -> dict[str, str]:
    """apt-cache's fields for the candidate version (apt-get update once if unknown)."""
    for attempt in (0, 1):
        proc = subprocess.run(
            ["apt-cache", "show", "--no-all-versions", package],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode == 0 and proc.stdout.strip():
            break
        if attempt == 0:
            _run("apt-get", "update", "-qq")
    else:
        raise RuntimeError(f"apt-cache knows no package {package}")
    fields = {}
    for line in proc.stdout.splitlines():
        key, sep, value = line.partition(": ")
        if sep and not line.startswith(" "):
            fields[key] = value.strip()
    return fields


def _packages() -> list[tuple[str, str]]:
    """(package, version) of the kernel image, busybox-static and qemu-guest-agent."""
    meta = _show(KERNEL_META)
    match = re.search(r"(linux-image-[^\s,()]+)", meta.get("Depends", ""))
    if match is None:
        raise RuntimeError(f"{KERNEL_META} names no kernel package: {meta}")
    names = [match.group(1), "busybox-static", "qemu-guest-agent"]
    return [(name, _show(name)["Version"]) for name in names]


def _cache_key(packages: list[tuple[str, str]]) -> str:
    digest = hashlib.sha256(Path(__file__).read_bytes())
    for name, version in packages:
        digest.update(f"{name}={version}\n".encode())
    kernel_version = packages[0][1].replace(":", "_").replace("+", "_")
    return f"{kernel_version}-{digest.hexdigest()[:12]}"


def _cpio_entry(out: io.BytesIO, ino: int, name: str, mode: int, data: bytes = b"") -> None:
    """One ``newc`` cpio header, name and data, each padded to 4 bytes."""
    fields = [ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name) + 1, 0]
    out.write(b"070701" + b"".join(f"{v:08X}".encode() for v in fields))
    out.write(name.encode() + b"\0")
    out.write(b"\0" * (-(110 + len(name) + 1) % 4))
    out.write(data)
    out.write(b"\0" * (-len(data) % 4))


def _cpio(files: dict[str, tuple[int, bytes]]) -> bytes:
    """A newc archive: ``files`` maps a path to (mode, content); folders have no content."""
    out = io.BytesIO()
    for ino, (name, (mode, data)) in enumerate(sorted(files.items()), start=1):
        _cpio_entry(out, ino, name, mode, data)
    _cpio_entry(out, 0, "TRAILER!!!", 0)
    return out.getvalue()


def _shared_libraries(binary: Path) -> list[Path]:
    libs = []
    for line in _run("ldd", binary).splitlines():
        parts = line.split()
        if "=>" in parts and len(parts) >= 3 and parts[2].startswith("/"):
            libs.append(Path(parts[2]))
        elif parts and parts[0].startswith("/"):
            libs.append(Path(parts[0]))  # the dynamic loader
    return libs


def _tree(root: Path, kernel_release: str) -> dict[str, tuple[int, bytes]]:
    folders = ["bin", "sbin", "usr", "usr/sbin", "etc", "lib", "lib/modules", "lib64"]
    folders += ["proc", "sys", "dev", "run", "tmp", "mnt", "var", "var/log", "var/run"]
    files: dict[str, tuple[int, bytes]] = {f: (0o040755, b"") for f in folders}
    files["init"] = (0o100755, INIT.encode())
    files["etc/fsfreeze-hook"] = (0o100755, HOOK.encode())
    files["bin/busybox"] = (0o100755, (root / "bin/busybox").read_bytes())
    agent = root / "usr/sbin/qemu-ga"
    files["usr/sbin/qemu-ga"] = (0o100755, agent.read_bytes())
    for lib in _shared_libraries(agent):
        for folder in ("lib", "lib64", "lib/x86_64-linux-gnu"):
            files.setdefault(folder, (0o040755, b""))
        files[str(lib.resolve().parent / lib.name).lstrip("/")] = (0o100755, lib.read_bytes())
        files[str(lib).lstrip("/")] = (0o100755, lib.read_bytes())
    modules = root / "lib/modules" / kernel_release
    for name in MODULES:
        found = next(modules.rglob(f"{name}.ko*"))
        data = found.read_bytes()
        if found.suffix == ".xz":
            data = _run_bytes("xz", "-dc", found)
        files[f"lib/modules/{name}.ko"] = (0o100644, data)
    for path in list(files):  # every parent folder of every file
        parent = Path(path).parent
        while str(parent) != ".":
            files.setdefault(str(parent), (0o040755, b""))
            parent = parent.parent
    return files


def _run_bytes(*args: str | Path) -> bytes:
    return subprocess.run([str(a) for a in args], capture_output=True, check=True).stdout


def _build(dest: Path, packages: list[tuple[str, str]]) -> None:
    with tempfile.TemporaryDirectory(prefix="strongroom-guest-") as tmp:
        work = Path(tmp)
        os.chmod(work, 0o755)  # apt's download user must be able to write here
        _run("apt-get", "download", *(f"{n}={v}" for n, v in packages), cwd=work)
        root = work / "root"
        for deb in work.glob("*.deb"):
            _run("dpkg-deb", "-x", deb, root)
        release = next((root / "lib/modules").iterdir()).name
        initrd = gzip.compress(_cpio(_tree(root, release)), compresslevel=1)
        staging = dest.with_name(dest.name + ".tmp")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        shutil.copy(next((root / "boot").glob("vmlinuz-*")), staging / "vmlinuz")
        (staging / "initrd.gz").write_bytes(initrd)
        shutil.rmtree(dest, ignore_errors=True)
        os.replace(staging, dest)


def guest_image() -> GuestImage:
    """The cached kernel and initramfs, built first if this key has none."""
    packages = _packages()
    dest = CACHE_DIR / _cache_key(packages)
    if not (dest / "initrd.gz").exists():
        _build(dest, packages)
    return GuestImage(dest / "vmlinuz", dest / "initrd.gz")


if __name__ == "__main__":
    print(guest_image())
