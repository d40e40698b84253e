"""Fixtures of the vault tests."""

from __future__ import annotations

import pytest

from strongroom.vault import KDFParams


@pytest.fixture
def derivations(monkeypatch: pytest.MonkeyPatch) -> list[KDFParams]:
    """The cost of every key derivation from now on, in order (the real Argon2id runs)."""
    seen: list[KDFParams] = []
    real = KDFParams.derive

    def counting(self: KDFParams, passphrase: str, salt: bytes) -> bytes:
        seen.append(self)
        return real(self, passphrase, salt)

    monkeypatch.setattr(KDFParams, "derive", counting)
    return seen
