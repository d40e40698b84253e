"""Prune's mark phase and per-pack accounting, within the index's memory budget.

The live set is one byte per index row (a numpy bool array), not a set of chunk ids: prune
needs the index (57 bytes per chunk) plus 1 byte per chunk plus constants.  Trees are walked
breadth-first in batches read in parallel; a tree's references are looked up with one
vectorized index search, and only newly marked tree rows are queued (8 bytes each).  Every
pass over all rows goes block by block, so no temporary grows with the vault.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from strongroom.errors import IntegrityError, RepairNeeded
from strongroom.records import dataclass
from strongroom.vault.index import ChunkIndex
from strongroom.vault.points import RecoveryPoint
from strongroom.vault.trees import tree_ref_array
from strongroom.vault.vault import Vault
from strongroom.vault.writer import CHUNK_TREE

BLOCK = 1 << 18
_TREE_BATCH = 64
_REPAIR = "run `strongroom check` (and `check --repair`) first; prune changed nothing"

Progress = Callable[[str, int, int], None]


@dataclass
class PackTable:
    """Per indexed pack (by its position in ``index.pack_ids``): its rows and live share."""

    start: np.ndarray
    end: np.ndarray
    live_rows: np.ndarray
    live_bytes: np.ndarray
    blob_bytes: np.ndarray
    """Stored bytes of every indexed blob per pack (the pack minus its header)."""

    @property
    def rows(self) -> np.ndarray:
        rows: np.ndarray = self.end - self.start
        return rows


def pack_runs(index: ChunkIndex) -> tuple[np.ndarray, np.ndarray]:
    """(first row, end row) of every pack; each pack's rows are one run after a fresh load."""
    pack = index.column("pack")
    n, npacks = len(pack), len(index.pack_ids)
    starts = []
    for b0 in range(0, n, BLOCK):
        blk = pack[b0 : b0 + BLOCK]
        cut = np.flatnonzero(blk[1:] != blk[:-1]) + 1 + b0
        if b0 == 0 or pack[b0] != pack[b0 - 1]:
            cut = np.concatenate(([b0], cut))
        starts.append(cut.astype(np.int64))
    run_start = np.concatenate(starts) if starts else np.empty(0, np.int64)
    run_pack = pack[run_start].astype(np.int64)
    if len(np.unique(run_pack)) != len(run_pack):
        raise RepairNeeded("the index holds a pack's entries in pieces; reopen the vault")
    start = np.zeros(npacks, np.int64)
    end = np.zeros(npacks, np.int64)
    start[run_pack] = run_start
    end[run_pack] = np.append(run_start[1:], n)
    return start, end


def account(index: ChunkIndex, live: np.ndarray) -> PackTable:
    """Live rows and live stored bytes per pack, block by block."""
    start, end = pack_runs(index)
    npacks = len(index.pack_ids)
    pack, length = index.column("pack"), index.column("length")
    live_rows = np.zeros(npacks, np.int64)
    live_bytes = np.zeros(npacks, np.float64)
    blob_bytes = np.zeros(npacks, np.float64)
    for b0 in range(0, len(pack), BLOCK):
        lv = live[b0 : b0 + BLOCK]
        p, lengths = pack[b0 : b0 + BLOCK], length[b0 : b0 + BLOCK]
        blob_bytes += np.bincount(p, weights=lengths, minlength=npacks)
        live_rows += np.bincount(p[lv], minlength=npacks)
        live_bytes += np.bincount(p[lv], weights=lengths[lv], minlength=npacks)
    return PackTable(
        start, end, live_rows, live_bytes.astype(np.int64), blob_bytes.astype(np.int64)
    )


class Marker:
    """Marks every row reachable from the given points' roots."""

    def __init__(self, vault: Vault, progress: Progress | None = None) -> None:
        self.vault = vault
        self.index = vault.index
        self.live = np.zeros(self.index.rows, dtype=bool)
        self._tf = self.index.column("tf")
        self._ids = self.index.column("ids")
        self._queue: list[np.ndarray] = []
        self._progress = progress
        self.trees_read = 0

    def mark_points(self, points: list[RecoveryPoint]) -> np.ndarray:
        for done, point in enumerate(points, 1):
            roots = b"".join(bytes.fromhex(r) for r in point.manifest.roots)
            self._visit(np.frombuffer(roots, dtype="V32"), point)
            self._drain(point)
            if self._progress:
                self._progress("mark", done, len(points))
        return self.live

    def _visit(self, ids: np.ndarray, point: RecoveryPoint) -> None:
        rows = self.index.rows_of(ids)
        if (rows < 0).any():
            missing = ids[int(np.flatnonzero(rows < 0)[0])].tobytes().hex()[:16]
            raise RepairNeeded(
                f"recovery point {point.short_id} references chunk {missing}, which is not in "
                f"the index; {_REPAIR}"
            )
        new = np.unique(rows[~self.live[rows]])
        if len(new):
            self.live[new] = True
            trees = new[(self._tf[new] & 0xF) == CHUNK_TREE]
            if len(trees):
                self._queue.append(trees)

    def _next_batch(self) -> list[bytes]:
        batch: list[bytes] = []
        while self._queue and len(batch) < _TREE_BATCH:
            rows = self._queue.pop()
            take, rest = rows[: _TREE_BATCH - len(batch)], rows[_TREE_BATCH - len(batch) :]
            if len(rest):
                self._queue.append(rest)
            batch.extend(v.tobytes() for v in self._ids[take])
        return batch

    def _drain(self, point: RecoveryPoint) -> None:
        while self._queue:
            batch = self._next_batch()
            try:
                plains = list(self.vault.reader.read_many(batch, workers=8, window=32))
            except IntegrityError as exc:
                raise RepairNeeded(
                    f"a tree of recovery point {point.short_id} cannot be read ({exc}); {_REPAIR}"
                ) from None
            for plain in plains:
                self.trees_read += 1
                try:
                    refs = tree_ref_array(plain)
                except IntegrityError as exc:
                    raise RepairNeeded(f"point {point.short_id}: {exc}; {_REPAIR}") from None
                self._visit(refs, point)
