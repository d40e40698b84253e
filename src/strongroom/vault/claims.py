"""Chunk claims: which of a backup's processes stores a new chunk.

A files backup of a big tree runs several processes, each with its own
:class:`~strongroom.vault.writer.ChunkWriter`.  A writer knows the vault's index and its own
new chunks, not the other processes' ones, so identical files read by two processes were
stored twice (8 % of a node_modules folder's vault).  With a :class:`ChunkClaims` shared by
all of them, a writer claims each chunk that no index holds before it stores it; only the
first claimant stores it, the others refer to it and note its id (``ChunkWriter.borrowed``).

The table lives in ``_claims.c`` (shared memory, lock-free; its comment says how).  A claim
is made on the id's first 64 bits, so whoever saves the point must check that every borrowed
id is in the index once all the processes flushed (``strongroom/files/backup.py`` does):
a claimant that failed fails the whole backup anyway, and a collision of 64-bit prefixes
becomes an error, never a point that refers to a chunk nobody stored.

Without the compiled module, or where a memfd cannot be made, there are no claims: each
process stores what it reads, as before.
"""

from __future__ import annotations

import contextlib
import mmap
import os

try:  # the compiled table (setup.py); without it every writer stores alone
    from strongroom.vault import _claims
except ImportError:  # pragma: no cover - a build without a C compiler
    _claims = None  # type: ignore[assignment]


class ChunkClaims:
    """One backup's shared table; every process maps the same memfd (:attr:`fd`)."""

    def __init__(self, fd: int, table: mmap.mmap) -> None:
        self.fd = fd
        self._table = table

    @classmethod
    def create(cls) -> ChunkClaims | None:
        """A new, empty table, or None where it cannot be had (then nothing is claimed)."""
        if _claims is None or not hasattr(os, "memfd_create"):
            return None
        try:
            fd = os.memfd_create("strongroom-claims", os.MFD_CLOEXEC)
        except OSError:
            return None
        return cls._mapped(fd)

    @classmethod
    def attach(cls, fd: int) -> ChunkClaims | None:
        """The table another process created, from its descriptor (this object owns ``fd``)."""
        if _claims is None:
            os.close(fd)
            return None
        return cls._mapped(fd)

    @classmethod
    def _mapped(cls, fd: int) -> ChunkClaims | None:
        assert _claims is not None
        try:
            # sparse: a page is only allocated when a claim first touches it
            if os.fstat(fd).st_size < _claims.TABLE_BYTES:
                os.ftruncate(fd, _claims.TABLE_BYTES)
            table = mmap.mmap(fd, _claims.TABLE_BYTES)
        except (OSError, ValueError):
            os.close(fd)
            return None
        return cls(fd, table)

    def claim(self, chunk_id: bytes) -> bool:
        """Whether this process should store ``chunk_id``: True when it claimed it now (or the
        table is full), False when some process claimed it before."""
        assert _claims is not None
        return _claims.claim(self._table, chunk_id) != 0

    def segments_used(self) -> int:
        assert _claims is not None
        return _claims.segments_used(self._table)

    def close(self) -> None:
        with contextlib.suppress(BufferError, ValueError):
            self._table.close()
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)
