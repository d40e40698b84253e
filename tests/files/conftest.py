"""Fixtures for the files engine tests."""

from __future__ import annotations

from collections.abc import Callable
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
