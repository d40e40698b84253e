"""Chunking layer: content-defined chunks for files, fixed aligned chunks for disk images."""

from strongroom.chunking._buffers import BytesLike
from strongroom.chunking.cdc import (
    ALGORITHM,
    DEFAULT_BUFFER_SIZE,
    CDCParams,
    ChunkSource,
    ContentChunker,
    Readable,
)
from strongroom.chunking.fixed import FixedChunker, is_zero

__all__ = [
    "ALGORITHM",
    "DEFAULT_BUFFER_SIZE",
    "BytesLike",
    "CDCParams",
    "ChunkSource",
    "ContentChunker",
    "FixedChunker",
    "Readable",
    "is_zero",
]
