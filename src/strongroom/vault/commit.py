"""Commit-time verification: never a recovery point whose chunks a prune removed meanwhile.

Normally a backup holds a shared lock and no prune (exclusive) can run while it does.  A lock
can still be lost (a suspended laptop, a network partition longer than the stale timeout) and
then a prune may have treated the backup's new chunks as garbage, or removed old chunks the
backup deduplicated against.  Prune always leaves evidence: it removes the stale lock it
overrides, and it replaces (deletes) every index object it rewrites.  So before committing,
``save_point`` looks for that evidence (one listing of ``index/`` and one ``stat`` per held
lock); only when it finds some does it make its lock good again (rewrite it and wait out any
running prune: from then on no prune can start before the commit), reload the index and
check that every chunk the new point reaches is indexed and its pack still exists.  The same
check catches an index object of this backup that the storage lost (acknowledged, not there).
"""

from __future__ import annotations

from typing import Protocol

from strongroom.errors import IntegrityError, LockConflict, PrunedDuringBackup
from strongroom.storage.backend import Backend
from strongroom.vault.index import ChunkIndex
from strongroom.vault.locks import VaultLock, default_wait
from strongroom.vault.pack import pack_name
from strongroom.vault.points import PointManifest
from strongroom.vault.stored import absent_packs
from strongroom.vault.trees import walk
from strongroom.vault.writer import CHUNK_TREE, INDEX_PREFIX


class Committing(Protocol):
    """What the check needs of the vault handle that commits (declared here, so this module
    does not import ``vault.py``, which calls it)."""

    @property
    def backend(self) -> Backend: ...
    @property
    def index(self) -> ChunkIndex: ...
    @property
    def index_names(self) -> set[str]: ...
    def held_locks(self) -> list[VaultLock]: ...
    def reload_index(self) -> None: ...
    def read_chunk(self, chunk_id: bytes) -> bytes: ...


_WHY = "the vault was pruned while this backup ran (or the storage lost a write)"
_AGAIN = "nothing was committed; run the backup again"


def pruned_meanwhile(vault: Committing) -> bool:
    """Whether a prune may have changed the vault since this handle loaded its index."""
    present = {info.name for info in vault.backend.list(INDEX_PREFIX)}
    if not vault.index_names <= present:
        return True
    return not all(lock.still_held() for lock in vault.held_locks())


def verify_before_commit(vault: Committing, manifest: PointManifest) -> None:
    """Raise :class:`PrunedDuringBackup` unless every chunk ``manifest`` reaches is stored."""
    if not pruned_meanwhile(vault):
        return
    for lock in vault.held_locks():
        try:
            lock.reassert(default_wait())  # no prune runs from here until the commit
        except LockConflict as exc:
            raise PrunedDuringBackup(f"{_WHY}, and {exc}; {_AGAIN}") from None
    vault.reload_index()
    index = vault.index

    def is_tree(cid: bytes) -> bool | None:
        entry = index.lookup(cid)
        return None if entry is None else entry.ctype == CHUNK_TREE

    missing = 0
    packs: set[bytes] = set()
    roots = [bytes.fromhex(r) for r in manifest.roots]
    try:
        for cid, _ in walk(roots, is_tree, vault.read_chunk, set()):
            entry = index.lookup(cid)
            if entry is None:
                missing += 1
            else:
                packs.add(entry.pack)
    except IntegrityError as exc:
        raise PrunedDuringBackup(f"{_WHY}: a tree it needs is gone ({exc}); {_AGAIN}") from None
    gone = absent_packs(vault.backend, packs)
    if missing or gone:
        lost = f"{missing} chunk(s) are no longer indexed" if missing else ""
        if gone:
            lost += ("; " if lost else "") + f"pack {pack_name(gone[0])} and {len(gone) - 1} more"
            lost += " are gone"
        raise PrunedDuringBackup(f"{_WHY}: {lost}; {_AGAIN}")
