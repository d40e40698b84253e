"""Whether chunks can still be read back: indexed, and their packs present on the storage.

Asked before a restore writes anything (so a damaged point fails before the first byte, not
half-way) and before a commit after a prune may have run (``vault/commit.py``).  Only the
index and the storage's metadata are consulted: a stat per pack for a few packs, one listing
of ``data/`` for many; nothing is read or decrypted.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from dataclasses import field

from strongroom.errors import ObjectNotFound
from strongroom.records import dataclass
from strongroom.storage.backend import Backend
from strongroom.vault.index import ChunkIndex
from strongroom.vault.pack import pack_name

_PACK_NAME = re.compile(r"^data/[0-9a-f]{2}/([0-9a-f]{64})$")
# Up to this many packs a stat each costs less than listing every pack of the vault.
_STAT_AT_MOST = 64


@dataclass
class Unstored:
    """What of a set of chunks cannot be read back."""

    missing: list[bytes] = field(default_factory=list)
    """Chunks the index does not know."""
    lost_packs: list[str] = field(default_factory=list)
    """Names of packs the index lists for some of the chunks but the storage does not hold."""

    def __bool__(self) -> bool:
        return bool(self.missing or self.lost_packs)


def unstored(backend: Backend, index: ChunkIndex, ids: Iterable[bytes]) -> Unstored:
    """Which of ``ids`` are not indexed, and which indexed ones' packs are gone."""
    found = Unstored()
    packs: set[bytes] = set()
    for cid in ids:
        entry = index.lookup(cid)
        if entry is None:
            found.missing.append(cid)
        else:
            packs.add(entry.pack)
    found.lost_packs = [pack_name(p) for p in absent_packs(backend, packs)]
    return found


def absent_packs(backend: Backend, packs: Collection[bytes]) -> list[bytes]:
    """The packs of ``packs`` the storage does not hold (a stat each, or one listing)."""
    if len(packs) <= _STAT_AT_MOST:
        gone = []
        for pack in packs:
            try:
                backend.stat(pack_name(pack))
            except ObjectNotFound:
                gone.append(pack)
        return gone
    present = {
        bytes.fromhex(m.group(1))
        for info in backend.list("data/")
        if (m := _PACK_NAME.match(info.name))
    }
    return [p for p in packs if p not in present]
