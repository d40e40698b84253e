"""Comparing MACs in constant time without ``hmac``.

``hmac`` imports ``hashlib``, which loads OpenSSL's libcrypto into the process (3.3 MiB of
its pages, 4 MiB in all: session 25), and a backup's processes need neither: their only use
was ``hmac.compare_digest``.  ``_operator._compare_digest`` is the same timing-safe
comparison (CPython's ``hmac`` falls back to it when OpenSSL is missing).
"""

from __future__ import annotations

from _operator import _compare_digest


def equal(a: bytes | bytearray | memoryview, b: bytes | bytearray | memoryview) -> bool:
    """Whether ``a`` and ``b`` are equal, in a time that depends on their lengths only."""
    return _compare_digest(a, b)
