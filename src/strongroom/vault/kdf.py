"""Argon2id, computed by libargon2 in memory the kernel can back with huge pages.

libargon2 takes its ``m_cost`` KiB from ``malloc``: for a slot's 32 MiB that is a fresh map
faulted in 4 KiB pages, 8,192 faults that cost 0.04-0.06 s of system time per derivation on a
VM (session 45: a quarter of the derivation's CPU, paid by every command that opens a vault
with a passphrase).  Handing it an anonymous map aligned to 2 MiB and advised
``MADV_HUGEPAGE`` lets the kernel fault the same memory in 16 pieces.  Only where the memory
comes from changes: the result is libargon2's (``argon2.low_level.core``, the binding
argon2-cffi documents for this), and any failure of the custom allocation falls back to
``hash_secret_raw``.
"""

from __future__ import annotations

import contextlib
import functools
import mmap
from typing import Any

from strongroom.anonmem import anonymous_map

_HUGE_PAGE = 2 * 1024 * 1024
# argon2.h: ARGON2_OK, ARGON2_MEMORY_ALLOCATION_ERROR, ARGON2_DEFAULT_FLAGS
_OK = 0
_ALLOCATION_ERROR = -22
_DEFAULT_FLAGS = 0


class _Maps:
    """The maps handed to libargon2, by the address it was given, until it frees them."""

    def __init__(self) -> None:
        self._held: dict[int, tuple[mmap.mmap, Any]] = {}

    def allocate(self, size: int) -> int:
        """The address of ``size`` bytes of fresh memory, aligned to a huge page."""
        from argon2.low_level import ffi

        whole = anonymous_map(size + _HUGE_PAGE)
        if hasattr(mmap, "MADV_HUGEPAGE"):
            with contextlib.suppress(OSError):  # a kernel without THP: small pages, as malloc's
                whole.madvise(mmap.MADV_HUGEPAGE)
        view = ffi.from_buffer(whole)
        base = int(ffi.cast("uintptr_t", view))
        address = -(-base // _HUGE_PAGE) * _HUGE_PAGE
        self._held[address] = (whole, view)
        return address

    def free(self, address: int) -> None:
        from argon2.low_level import ffi

        whole, view = self._held.pop(address)
        ffi.release(view)
        whole.close()

    def __len__(self) -> int:
        return len(self._held)


_maps = _Maps()


@functools.cache
def _make_callbacks() -> tuple[Any, Any]:
    """libargon2's allocate and free hooks, made once (a callback is a small executable
    thunk that must outlive every call)."""
    from argon2.low_level import ffi

    def allocate(memory: Any, size: int) -> int:
        memory[0] = ffi.cast("uint8_t *", _maps.allocate(size))
        return 0

    def free(memory: Any, _size: int) -> None:
        _maps.free(int(ffi.cast("uintptr_t", memory)))

    def quiet(*_exc_info: object) -> None:
        """A failed map (allocate then returns the allocation error, and the caller
        falls back) is no traceback on stderr."""

    return (
        ffi.callback("int(uint8_t **, size_t)", allocate, error=_ALLOCATION_ERROR, onerror=quiet),
        ffi.callback("void(uint8_t *, size_t)", free, onerror=quiet),
    )


def argon2id(
    secret: bytes, salt: bytes, *, time_cost: int, memory_kib: int, parallelism: int
) -> bytes:
    """Argon2id (version 1.3) of ``secret`` and ``salt``: 32 bytes, the same as
    ``argon2.low_level.hash_secret_raw(..., hash_len=32, type=Type.ID)``."""
    tag = _hash(secret, salt, b"", b"", (time_cost, memory_kib, parallelism))
    if tag is not None:
        return tag
    # the custom allocation failed, or the parameters are refused: argon2-cffi's own call
    # computes the same hash or raises its error
    from argon2.low_level import Type, hash_secret_raw

    return hash_secret_raw(
        secret,
        salt,
        time_cost=time_cost,
        memory_cost=memory_kib,
        parallelism=parallelism,
        hash_len=32,
        type=Type.ID,
    )


# RFC 9106 section 5.3: Argon2id, version 0x13, 32 KiB, 3 passes, 4 lanes
_RFC9106_INPUTS = (b"\x01" * 32, b"\x02" * 16, b"\x03" * 8, b"\x04" * 12, (3, 32, 4))
_RFC9106_TAG = bytes.fromhex("0d640df58d78766c08c037a34a8b53c9d01ef0452d75b65eb52520e96b01e659")


def check_build() -> bool:
    """Whether the installed libargon2 computes RFC 9106's Argon2id test vector (set-up builds
    it for the machine's CPU, ``scripts/setup.sh``, and keeps that build only if it does)."""
    return _hash(*_RFC9106_INPUTS) == _RFC9106_TAG


def _hash(
    pwd: bytes, salt: bytes, secret: bytes, ad: bytes, cost: tuple[int, int, int]
) -> bytes | None:
    """libargon2's ``argon2_ctx`` with this module's memory; None if it fails."""
    from argon2.low_level import ARGON2_VERSION, Type, core, ffi

    time_cost, memory_kib, parallelism = cost
    out = ffi.new("uint8_t[]", 32)
    inputs = [
        ffi.new("uint8_t[]", value) if value else ffi.NULL for value in (pwd, salt, secret, ad)
    ]
    try:
        allocate, free = _make_callbacks()
    except (MemoryError, RuntimeError):  # no executable thunks here (a hardened kernel)
        allocate = free = ffi.NULL
    context = ffi.new(
        "argon2_context *",
        {
            "out": out,
            "outlen": 32,
            "pwd": inputs[0],
            "pwdlen": len(pwd),
            "salt": inputs[1],
            "saltlen": len(salt),
            "secret": inputs[2],
            "secretlen": len(secret),
            "ad": inputs[3],
            "adlen": len(ad),
            "t_cost": time_cost,
            "m_cost": memory_kib,
            "lanes": parallelism,
            "threads": parallelism,
            "version": ARGON2_VERSION,
            "allocate_cbk": allocate,
            "free_cbk": free,
            "flags": _DEFAULT_FLAGS,
        },
    )
    if core(context, Type.ID.value) != _OK:
        return None
    return bytes(out)
