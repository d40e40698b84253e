"""Argon2id in huge-page memory (strongroom.vault.kdf): libargon2's result, its maps released."""

from __future__ import annotations

import mmap
from pathlib import Path

import pytest
from argon2.low_level import Type, hash_secret_raw
from hypothesis import given, settings
from hypothesis import strategies as st

from strongroom.vault import kdf
from strongroom.vault.kdf import argon2id, check_build

THP_MODE = Path("/sys/kernel/mm/transparent_hugepage/enabled")


def test_the_installed_argon2_computes_rfc_9106s_vector() -> None:
    # set-up may build libargon2 for this CPU (AVX2): a miscompiled build fails here
    assert check_build()


@settings(max_examples=40, deadline=None)
@given(
    secret=st.binary(max_size=80),
    salt=st.binary(min_size=8, max_size=40),
    time_cost=st.integers(1, 3),
    parallelism=st.integers(1, 4),
    extra_kib=st.integers(0, 300),
)
def test_the_hash_is_argon2_cffis(
    secret: bytes, salt: bytes, time_cost: int, parallelism: int, extra_kib: int
) -> None:
    memory_kib = 8 * parallelism + extra_kib
    ours = argon2id(
        secret, salt, time_cost=time_cost, memory_kib=memory_kib, parallelism=parallelism
    )
    theirs = hash_secret_raw(secret, salt, time_cost, memory_kib, parallelism, 32, Type.ID)
    assert ours == theirs


def _map_count() -> int:
    return len(Path("/proc/self/maps").read_text().splitlines())


def test_every_map_is_released() -> None:
    argon2id(b"warm", b"salt" * 4, time_cost=1, memory_kib=4096, parallelism=2)
    before = _map_count()
    for n in range(8):
        argon2id(b"pw%d" % n, b"salt" * 4, time_cost=1, memory_kib=4096, parallelism=2)
    assert len(kdf._maps) == 0
    assert _map_count() <= before + 1


def _smaps_field(address: int, field: str) -> str:
    lines = Path("/proc/self/smaps").read_text().splitlines()
    inside = False
    for line in lines:
        head = line.split()[0]
        if "-" in head and all(c in "0123456789abcdef-" for c in head):
            low, high = (int(x, 16) for x in head.split("-"))
            inside = low <= address < high
        elif inside and line.startswith(field + ":"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"no {field} for {address:#x}")


def test_the_memory_is_aligned_and_may_be_huge_pages() -> None:
    address = kdf._maps.allocate(8 << 20)
    try:
        assert address % (2 << 20) == 0
        if hasattr(mmap, "MADV_HUGEPAGE") and "[never]" not in THP_MODE.read_text():
            assert _smaps_field(address, "THPeligible") == "1"
    finally:
        kdf._maps.free(address)
    assert len(kdf._maps) == 0


def test_a_failed_map_falls_back_quietly(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    # a wrapper for the one fault we cannot cause here: the kernel refusing a map
    def refuse(size: int) -> int:
        raise OSError(12, "Cannot allocate memory")

    monkeypatch.setattr(kdf._maps, "allocate", refuse)
    tag = argon2id(b"passphrase", b"s" * 16, time_cost=2, memory_kib=1024, parallelism=2)
    assert tag == hash_secret_raw(b"passphrase", b"s" * 16, 2, 1024, 2, 32, Type.ID)
    assert capfd.readouterr().err == ""
