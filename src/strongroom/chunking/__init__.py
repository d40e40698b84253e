"""Chunking layer: content-defined chunks for files, fixed aligned chunks for disk images.

Names load on first use (:mod:`strongroom.lazyexports`): an image backup needs only the fixed
chunker, and the content-defined one loads its compiled scan and reads fastcdc-py's gear table.
"""

from typing import TYPE_CHECKING

from strongroom.lazyexports import lazy_exports

if TYPE_CHECKING:
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

_HOME = {
    "BytesLike": "_buffers",
    "ALGORITHM": "cdc",
    "DEFAULT_BUFFER_SIZE": "cdc",
    "CDCParams": "cdc",
    "ChunkSource": "cdc",
    "ContentChunker": "cdc",
    "Readable": "cdc",
    "FixedChunker": "fixed",
    "is_zero": "fixed",
}

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

__getattr__, __dir__ = lazy_exports(__name__, _HOME, __all__)
