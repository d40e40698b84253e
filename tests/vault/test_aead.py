"""AES-256-GCM, compiled (vault/_gcm.c: AES-NI in _gcm_ni.c, else the system's libcrypto),
gives the bytes the cryptography package gives, refuses what is not authentic, and lets
other threads run; a vault written through either is read through the other; and the two
compiled engines agree."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strongroom.files import RestoreOptions, restore_files
from strongroom.storage import LocalBackend
from strongroom.vault import Vault, aead
from strongroom.vault.check import check_vault
from tests.conftest import FAST_KDF, PASSPHRASE

OURS = aead.compiled()
THEIRS = aead.cryptography()
BOTH = pytest.mark.parametrize("impl", [OURS, THEIRS], ids=["compiled", "cryptography"])


def _cpu_has(*flags: str) -> bool:
    with open("/proc/cpuinfo") as info:
        line = next((x for x in info if x.startswith("flags")), "")
    return all(f in line.split() for f in flags)


keys = st.binary(min_size=32, max_size=32)
nonces = st.binary(min_size=12, max_size=12)
datas = st.binary(max_size=5000) | st.integers(0, 70_000).map(os.urandom)


def test_the_package_build_made_it_and_it_is_used() -> None:
    """scripts/setup.sh builds _gcm (pip -e); the vault uses it, not the package, and on a
    CPU with AES-NI its own engine, which loads no libcrypto."""
    aes_ni = _cpu_has("aes", "pclmulqdq", "ssse3", "sse4_1")
    assert aead.implementation() == ("aes-ni" if aes_ni else "libcrypto")


@given(keys, nonces, datas, st.binary(max_size=300))
@settings(max_examples=150, deadline=None)
def test_same_bytes_as_cryptography(key: bytes, nonce: bytes, data: bytes, aad: bytes) -> None:
    sealed = OURS[0](key, nonce, data, aad)
    assert sealed == THEIRS[0](key, nonce, data, aad)
    assert len(sealed) == len(data) + aead.TAG_SIZE
    out = bytearray(len(sealed))
    OURS[1](key, nonce, memoryview(data), aad, memoryview(out), 0)
    assert out == sealed
    assert OURS[2](key, nonce, sealed, aad) == data
    assert THEIRS[2](key, nonce, memoryview(out), aad) == data


@given(keys, nonces, st.integers(0, 1100), st.integers(0, 300))
@settings(max_examples=300, deadline=None)
def test_every_length_around_the_blocks_and_groups(
    key: bytes, nonce: bytes, size: int, aad_size: int
) -> None:
    """Data and additional data of every length up to several groups of eight blocks (the
    AES-NI engine's unit) and partial blocks on both sides."""
    data, aad = os.urandom(size), os.urandom(aad_size)
    sealed = OURS[0](key, nonce, data, aad)
    assert sealed == THEIRS[0](key, nonce, data, aad)
    assert OURS[2](key, nonce, sealed, aad) == data


_ENGINE = """
import pickle, sys
from strongroom.vault import _gcm
cases = pickle.load(sys.stdin.buffer)
out = [(_gcm.encrypt(*case), _gcm.decrypt(case[0], case[1], _gcm.encrypt(*case), case[3]))
       for case in cases]
pickle.dump((_gcm.ENGINE, out), sys.stdout.buffer)
"""


def _through(engine: str, cases: list[tuple[bytes, bytes, bytes, bytes]]) -> list[Any]:
    done = subprocess.run(
        [sys.executable, "-c", _ENGINE],
        input=pickle.dumps(cases),
        env={**os.environ, "STRONGROOM_GCM": engine},
        capture_output=True,
        check=True,
    )
    name, out = pickle.loads(done.stdout)
    assert name == engine or (engine == "aes-ni" and not _cpu_has("aes", "pclmulqdq"))
    return list(out)


def test_the_two_compiled_engines_agree() -> None:
    """libcrypto's engine (STRONGROOM_GCM=libcrypto) and AES-NI's seal and open alike, also
    past libcrypto's 16 MiB steps (EVP takes lengths as int)."""
    sizes = [0, 1, 15, 16, 17, 127, 128, 129, 1000, 65_536 + 3, 3 << 20]
    cases = [(os.urandom(32), os.urandom(12), os.urandom(n), os.urandom(n % 50)) for n in sizes]
    cases.append((os.urandom(32), os.urandom(12), os.urandom((17 << 20) + 5), os.urandom(40)))
    mine, theirs = _through("aes-ni", cases), _through("libcrypto", cases)
    assert mine == theirs
    assert [opened for _, opened in mine] == [case[2] for case in cases]


@given(keys, nonces, st.binary(max_size=600), st.binary(max_size=40), st.data())
@settings(max_examples=150, deadline=None)
def test_any_changed_byte_is_refused(
    key: bytes, nonce: bytes, data: bytes, aad: bytes, draw: st.DataObject
) -> None:
    """A flipped bit in the ciphertext or tag, the additional data, the nonce or the key,
    or a truncated ciphertext: never a plaintext, from either implementation."""
    sealed = OURS[0](key, nonce, data, aad)
    parts = [bytearray(sealed), bytearray(aad), bytearray(nonce), bytearray(key)]
    which = draw.draw(st.sampled_from([i for i, p in enumerate(parts) if p]), label="part")
    at = draw.draw(st.integers(0, len(parts[which]) - 1), label="byte")
    parts[which][at] ^= 1 << draw.draw(st.integers(0, 7), label="bit")
    s, a, n, k = (bytes(p) for p in parts)
    for impl in (OURS, THEIRS):
        assert impl[2](k, n, s, a) is None
        assert impl[2](key, nonce, sealed[: len(sealed) - 1], aad) is None


@BOTH
def test_wrong_sizes_are_value_errors(impl: tuple[Callable[..., object], ...]) -> None:
    encrypt, encrypt_into, decrypt = impl
    with pytest.raises(ValueError):
        encrypt(bytes(31), bytes(12), b"x", b"")
    with pytest.raises(ValueError):
        encrypt(bytes(32), bytes(13), b"x", b"")
    with pytest.raises(ValueError):
        decrypt(bytes(32), bytes(11), bytes(40), b"")
    for size, offset in ((16, 0), (18, 2), (18, -1)):  # one byte of data: 17 bytes out
        with pytest.raises(ValueError):
            encrypt_into(bytes(32), bytes(12), b"x", b"", memoryview(bytearray(size)), offset)
    out = bytearray(b"#" * 20)
    encrypt_into(bytes(32), bytes(12), b"x", b"a", out, 2)  # at an offset, and nowhere else
    sealed = encrypt(bytes(32), bytes(12), b"x", b"a")
    assert isinstance(sealed, bytes) and out == b"##" + sealed + b"#"
    assert decrypt(bytes(32), bytes(12), bytes(15), b"") is None  # shorter than a tag


def test_aes_gcm_object() -> None:
    cipher = aead.AesGcm(bytes(range(32)))
    sealed = cipher.encrypt(bytes(12), b"plain", b"aad")
    assert cipher.decrypt(bytes(12), sealed, b"aad") == b"plain"
    with pytest.raises(aead.AuthenticationFailed):
        cipher.decrypt(bytes(12), sealed, b"other aad")
    with pytest.raises(ValueError):
        aead.AesGcm(bytes(16))  # AES-128 keys are not the vault's


def test_data_longer_than_a_step() -> None:
    """Long data and additional data are whole (_gcm.c feeds libcrypto 16 MiB at a time:
    test_the_two_compiled_engines_agree compares that engine with this one)."""
    key, nonce = os.urandom(32), os.urandom(12)
    data, aad = os.urandom((40 << 20) + 5), os.urandom((16 << 20) + 3)
    sealed = OURS[0](key, nonce, data, aad)
    assert sealed == THEIRS[0](key, nonce, data, aad)
    assert OURS[2](key, nonce, sealed, aad) == data
    assert OURS[2](key, nonce, sealed, aad[:-1]) is None


def test_other_threads_run_while_it_encrypts() -> None:
    """While one thread encrypts 384 MiB in one call, another runs Python all along: 3-7
    million steps here, against some 80,000 (a switch interval before the call starts) if
    the call held the GIL."""
    data = bytes(384 << 20)
    started, done = threading.Event(), threading.Event()

    def work() -> None:
        started.set()
        OURS[0](bytes(32), bytes(12), data, b"")
        done.set()

    worker = threading.Thread(target=work)
    worker.start()
    started.wait()
    steps = 0
    while not done.is_set():
        steps += 1
    worker.join()
    assert steps > 1_000_000


def test_a_vault_written_through_cryptography_reads_through_libcrypto(tmp_path: Path) -> None:
    """The vault's bytes do not depend on the implementation: a backup made by a process
    that uses the package is restored and checked by this one."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "big.bin").write_bytes(os.urandom(3 << 20))
    (src / "small.txt").write_text("small " * 100)
    Vault.init(LocalBackend(tmp_path / "vault"), PASSPHRASE, kdf=FAST_KDF)
    env = {
        **os.environ,
        "STRONGROOM_AEAD": "cryptography",
        "STRONGROOM_VAULT": str(tmp_path / "vault"),
        "STRONGROOM_PASSWORD": PASSPHRASE,
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
    }
    script = (
        "import sys; from strongroom.vault import aead; from strongroom.cli.main import main;"
        "assert aead.implementation() == 'cryptography'; sys.exit(main(sys.argv[1:]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, "backup", "files", str(src), "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    vault = Vault.open(LocalBackend(tmp_path / "vault"), PASSPHRASE)
    assert check_vault(vault, read_data=True).ok
    restore_files(vault, vault.resolve_point("latest"), RestoreOptions(tmp_path / "out"))
    restored = tmp_path / "out" / src.relative_to("/")
    assert (restored / "big.bin").read_bytes() == (src / "big.bin").read_bytes()
    assert (restored / "small.txt").read_text() == "small " * 100
