"""Tree chunks: the generic envelope that lets the vault follow references.

A tree chunk's plaintext is ``count u32 | count x 32-byte chunk ids | body``.  The engines put
whatever they like in the body (a file tree, a disk's chunk map) and list every chunk the body
refers to in the reference table, so check, stats and prune can walk any recovery point
without knowing the engine's format.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING

from strongroom.errors import IntegrityError

if TYPE_CHECKING:
    import numpy as np

_COUNT = struct.Struct("<I")


def encode_tree(refs: Sequence[bytes], body: bytes) -> bytes:
    return b"".join([_COUNT.pack(len(refs)), *refs, body])


def decode_tree(plain: bytes) -> tuple[list[bytes], bytes]:
    if len(plain) < _COUNT.size:
        raise IntegrityError("tree chunk is truncated")
    (count,) = _COUNT.unpack_from(plain)
    end = _COUNT.size + 32 * count
    if end > len(plain):
        raise IntegrityError("tree chunk's reference table runs past its end")
    refs = [plain[i : i + 32] for i in range(_COUNT.size, end, 32)]
    return refs, plain[end:]


def tree_ref_array(plain: bytes) -> np.ndarray:
    """A tree chunk's reference table as a V32 array (no per-reference Python objects)."""
    import numpy as np  # for prune's bulk marking only: backups and restores never need it

    if len(plain) < _COUNT.size:
        raise IntegrityError("tree chunk is truncated")
    (count,) = _COUNT.unpack_from(plain)
    if _COUNT.size + 32 * count > len(plain):
        raise IntegrityError("tree chunk's reference table runs past its end")
    return np.frombuffer(plain, dtype="V32", count=count, offset=_COUNT.size)


def walk(
    roots: Iterable[bytes],
    is_tree: Callable[[bytes], bool | None],
    read: Callable[[bytes], bytes],
    seen: set[bytes],
) -> Iterator[tuple[bytes, bytes | None]]:
    """Yield (chunk id, parent tree id) for every chunk reachable from ``roots`` not in ``seen``.

    ``is_tree`` answers None for a chunk the index does not know: it is yielded (so callers can
    report it) but not descended into.
    """
    stack: list[tuple[bytes, bytes | None]] = [(r, None) for r in roots]
    while stack:
        cid, parent = stack.pop()
        if cid in seen:
            continue
        seen.add(cid)
        yield cid, parent
        if is_tree(cid):
            refs, _ = decode_tree(read(cid))
            stack.extend((ref, cid) for ref in refs)
