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

import re
from typing import TYPE_CHECKING

from strongroom.errors import IntegrityError, LockConflict, PrunedDuringBackup
from strongroom.vault.locks import default_wait
from strongroom.vault.pack import pack_name
from strongroom.vault.points import PointManifest
from strongroom.vault.trees import walk
from strongroom.vault.writer import CHUNK_TREE, INDEX_PREFIX

if TYPE_CHECKING:
    from strongroom.vault.vault import Vault

_PACK_NAME = re.compile(r"^data/[0-9a-f]{2}/([0-9a-f]{64})$")
_WHY = "the vault was pruned while this backup ran (or the storage lost a write)"
_AGAIN = "nothing was committed; run the backup again"


def pruned_meanwhile(vault: Vault) -> bool:
    """Whether a prune may have changed the vault since this handle loaded its index."""
    present = {info.name for info in vault.backend.list(INDEX_PREFIX)}
    if not vault.index_names <= present:
        return True
    return not all(lock.still_held() for lock in vault.held_locks())


def verify_before_commit(vault: Vault, manifest: PointManifest) -> None:
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
    present = {
        bytes.fromhex(m.group(1))
        for info in vault.backend.list("data/")
        if (m := _PACK_NAME.match(info.name))
    }
    gone = [p for p in packs if p not in present]
    if missing or gone:
        lost = f"{missing} chunk(s) are no longer indexed" if missing else ""
        if gone:
            lost += ("; " if lost else "") + f"pack {pack_name(gone[0])} and {len(gone) - 1} more"
            lost += " are gone"
        raise PrunedDuringBackup(f"{_WHY}: {lost}; {_AGAIN}")
