"""Fixtures for the files engine tests."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from strongroom.storage import LocalBackend
from strongroom.vault import Vault
from tests.conftest import FAST_KDF, PASSPHRASE


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))


@pytest.fixture
def vault_dir(tmp_path: Path) -> Path:
    return tmp_path / "vault"


@pytest.fixture
def vault(vault_dir: Path) -> Vault:
    return Vault.init(LocalBackend(vault_dir), PASSPHRASE, kdf=FAST_KDF)


@pytest.fixture
def reopen(vault_dir: Path, vault: Vault) -> Callable[[], Vault]:
    """Opens a second handle on the same vault from scratch (as on another machine)."""
    return lambda: Vault.open(LocalBackend(vault_dir), PASSPHRASE)


@pytest.fixture
def ext4(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """Makes and mounts small ext4 file systems; unflags and unmounts them afterwards."""
    if os.geteuid() != 0:
        pytest.skip("loop mounts and chattr +i need root")
    mounts: list[Path] = []

    def make(name: str) -> Path:
        image, mount = tmp_path / f"{name}.img", tmp_path / name
        with open(image, "wb") as f:
            f.truncate(16 << 20)
        subprocess.run(["mkfs.ext4", "-q", "-m", "0", "-F", str(image)], check=True)
        mount.mkdir()
        subprocess.run(["mount", "-o", "loop", str(image), str(mount)], check=True)
        mounts.append(mount)
        return mount

    try:
        yield make
    finally:
        for mount in mounts:
            subprocess.run(["chattr", "-R", "-i", "-a", str(mount)], check=False)
            subprocess.run(["umount", str(mount)], check=True)
