"""Buffer helpers shared by the chunkers."""

from __future__ import annotations

from typing import TypeAlias

from strongroom.errors import ChunkingError

__all__ = ["BytesLike", "byte_view"]

BytesLike: TypeAlias = bytes | bytearray | memoryview
"""Any contiguous buffer accepted by the chunkers."""


def byte_view(data: BytesLike) -> memoryview:
    """A flat unsigned-byte memoryview of ``data``, without copying."""
    view = memoryview(data)
    if not view.c_contiguous:
        raise ChunkingError("chunking needs a contiguous buffer")
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")
    return view
