"""Fixtures for the libvirt tests: a running libvirtd, the cached test guest, vaults.

A missing piece FAILS the tests (never skips them): ``apt-get install -y qemu-system-x86
qemu-utils libvirt-daemon-system libvirt-dev pkg-config`` and ``pip install libvirt-python``
(``scripts/setup.sh`` does both).  libvirtd and virtlogd are started with ``-d`` when they are
not running (no systemd here).  Guests are ``<domain type='qemu'>`` (TCG): KVM guests do not
boot on these machines.
"""

from __future__ import annotations

import contextlib
import grp
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import PASSPHRASE

from ._guest import DiskSpec, Guest, copy_image, remove_test_domains
from ._helpers import init_vault
from .guest import GuestImage, guest_image

PACKAGES = "qemu-system-x86 qemu-utils libvirt-daemon-system libvirt-dev pkg-config"
URI = "qemu:///system"


def _running(name: str) -> bool:
    return subprocess.run(["pgrep", "-x", name], capture_output=True, check=False).returncode == 0


def _kvm_like_udev() -> None:
    """Give /dev/kvm the owner and mode Debian's udev rule gives it (root:kvm 0660).

    Without udev it stays root-only, and libvirtd, which probed qemu with KVM, then finds
    KVM unusable by its qemu user and re-probes qemu on every call (a define takes ~50 s).
    """
    kvm = Path("/dev/kvm")
    if kvm.exists() and os.geteuid() == 0:
        with contextlib.suppress(KeyError, OSError):
            os.chown(kvm, 0, grp.getgrnam("kvm").gr_gid)
            os.chmod(kvm, 0o660)


def _start_daemons() -> None:
    _kvm_like_udev()
    for daemon in ("virtlogd", "libvirtd"):
        if _running(daemon):
            continue
        if shutil.which(daemon) is None:
            pytest.fail(f"{daemon} not found: apt-get install -y {PACKAGES}")
        subprocess.run([daemon, "-d"], check=True, capture_output=True)


@pytest.fixture(scope="session")
def conn() -> Iterator[Any]:
    """A libvirt connection to qemu:///system (daemons started here if needed)."""
    try:
        import libvirt
    except ImportError:
        pytest.fail("libvirt-python is missing: pip install libvirt-python (see setup.sh)")
    if shutil.which("qemu-system-x86_64") is None:
        pytest.fail(f"qemu-system-x86_64 not found: apt-get install -y {PACKAGES}")
    _start_daemons()
    deadline = time.monotonic() + 30
    while True:
        try:
            connection = libvirt.open(URI)
            break
        except libvirt.libvirtError as exc:
            if time.monotonic() > deadline:
                pytest.fail(f"libvirtd does not answer at {URI}: {exc}")
            time.sleep(0.3)
    remove_test_domains(connection, stale=True)
    yield connection
    remove_test_domains(connection)
    connection.close()


@pytest.fixture(scope="session")
def vm_root(conn: Any) -> Iterator[Path]:
    """A folder libvirt's qemu user can reach (pytest's tmp folders are root-only)."""
    root = Path(tempfile.mkdtemp(prefix="strongroom-libvirt-", dir="/var/tmp"))
    os.chmod(root, 0o711)
    yield root
    remove_test_domains(conn)
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def image(vm_root: Path) -> GuestImage:
    started = time.monotonic()
    built = guest_image()
    assert time.monotonic() - started < 60, "building the test guest took a minute or more"
    return copy_image(built, vm_root / "boot")


@pytest.fixture(scope="session")
def make_guest(conn: Any, vm_root: Path, image: GuestImage) -> Callable[..., Guest]:
    """``make_guest(name, [DiskSpec...], agent=True)``: defined, not started."""

    def make(name: str, specs: list[DiskSpec] | None = None, agent: bool = True) -> Guest:
        folder = vm_root / name
        (folder / "sockets").mkdir(parents=True, exist_ok=True)
        os.chmod(folder / "sockets", 0o777)  # qemu (user libvirt-qemu) binds the console here
        os.chmod(folder, 0o755)
        specs = specs or [DiskSpec("vda"), DiskSpec("vdb", size=32 << 20, ext4=True)]
        return Guest.create(conn, name, folder, image, specs, agent)

    return make


@pytest.fixture
def vault_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh vault the CLI finds through the environment."""
    vault = init_vault(tmp_path / "vault")
    monkeypatch.setenv("STRONGROOM_PASSWORD", PASSPHRASE)
    monkeypatch.setenv("STRONGROOM_VAULT", str(vault))
    return vault
