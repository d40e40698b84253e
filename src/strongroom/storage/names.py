"""Validation of object names, shared by every backend.

Names must mean the same thing on a local disk and in a bucket, so the rules are the strictest
of both: '/'-separated, relative, no empty, '.' or '..' components, no NUL, and no component
that could be mistaken for a local backend's in-flight temporary file.
"""

from __future__ import annotations

import blake3

from strongroom.errors import PermanentStorageError

TEMP_PREFIX = ".tmp-"
"""Leading characters of a local backend's temporary files; reserved in every backend."""


def content_digest(data: bytes | bytearray | memoryview) -> bytes:
    """The 32-byte digest that names content-addressed objects (BLAKE3, unkeyed).

    BLAKE3 rather than SHA-256: naming every pack hashes every stored byte once more, and
    BLAKE3 runs at about 4x SHA-256's speed here (7.6 vs 1.8 GB/s).
    """
    return blake3.blake3(data).digest()


def content_hasher() -> blake3.blake3:
    """An incremental :func:`content_digest`: ``update`` piece by piece, then ``digest``."""
    return blake3.blake3()


def check_name(name: str) -> str:
    """Return ``name`` unchanged if it is a valid object name, else raise."""
    if not name:
        raise PermanentStorageError("invalid object name: empty", name=name)
    for part in name.split("/"):
        if part in ("", ".", ".."):
            raise PermanentStorageError(
                f"invalid object name {name!r}: empty, '.' or '..' component or leading '/'",
                name=name,
            )
        if part.startswith(TEMP_PREFIX):
            raise PermanentStorageError(
                f"invalid object name {name!r}: components starting with {TEMP_PREFIX!r} "
                "are reserved",
                name=name,
            )
    if "\0" in name:
        raise PermanentStorageError(f"invalid object name {name!r}: NUL character", name=name)
    return name


def check_prefix(prefix: str) -> str:
    """Return ``prefix`` unchanged if it can start a valid name ('' and 'data/' included)."""
    if not prefix:
        return prefix
    if prefix.startswith("/"):
        raise PermanentStorageError(f"invalid list prefix {prefix!r}: leading '/'", name=prefix)
    # A prefix may end with '/' or in the middle of a component; what precedes must be valid.
    head, _, tail = prefix.rpartition("/")
    if head:
        check_name(head)
    if tail in (".", "..") or "\0" in tail:
        raise PermanentStorageError(f"invalid list prefix {prefix!r}", name=prefix)
    return prefix


def check_range(name: str, offset: int, length: int) -> None:
    """Reject negative ranges, which are caller bugs that no backend could satisfy."""
    if offset < 0 or length < 0:
        raise PermanentStorageError(
            f"invalid range offset={offset} length={length} for {name}", name=name
        )


def split_prefix(prefix: str) -> tuple[str, str]:
    """Split a list prefix into its folder part (``'a/b'`` or ``''``) and the partial rest."""
    head, sep, tail = prefix.rpartition("/")
    return (head, tail) if sep else ("", prefix)
