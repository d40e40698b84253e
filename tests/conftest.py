"""Fixtures shared by every test package."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from strongroom.storage import Backend, LocalBackend
from strongroom.vault import KDFParams, Vault, VaultSettings
from tests.constants import FAST_KDF, PASSPHRASE
from tests.emulators import azurite, moto

__all__ = [
    "FAST_KDF",
    "PASSPHRASE",
    "azurite",
    "moto",
]  # session fixtures shared by every test package


@pytest.fixture
def fast_kdf() -> KDFParams:
    return FAST_KDF


@pytest.fixture
def make_vault() -> Callable[..., Vault]:
    def make(backend: Backend, pack_size: int = 4 << 20) -> Vault:
        return Vault.init(
            backend, PASSPHRASE, kdf=FAST_KDF, settings=VaultSettings(pack_size=pack_size)
        )

    return make


@pytest.fixture
def local_vault(tmp_path: Path, make_vault: Callable[..., Vault]) -> Vault:
    vault: Vault = make_vault(LocalBackend(tmp_path / "vault"))
    return vault
