"""The vault: deduplicated, compressed, client-side encrypted storage of recovery points.

The public surface is :class:`Vault` and the types it hands out; the modules behind it are
private to this package.

Names are imported on first use (PEP 562): ``from strongroom.vault import Vault`` loads only
what opening a vault needs, so the passphrase's key derivation (a large transient allocation)
runs before numpy and the engines are loaded, which keeps every command's peak memory low.
"""

from __future__ import annotations

import sys
import types
from typing import TYPE_CHECKING

from strongroom.lazyexports import lazy_exports

if TYPE_CHECKING:
    from strongroom.vault.check import CheckReport, Problem, check_vault
    from strongroom.vault.claims import ChunkClaims
    from strongroom.vault.config import VaultSettings
    from strongroom.vault.forget import soft_delete, undelete
    from strongroom.vault.handoff import VaultHandoff, open_handoff
    from strongroom.vault.keys import KDFParams, KeySlot
    from strongroom.vault.points import PointManifest, RecoveryPoint
    from strongroom.vault.prune import PruneOptions, PruneReport, prune
    from strongroom.vault.reader import NOT_INDEXED, Located, Place
    from strongroom.vault.repair import RepairReport, repair
    from strongroom.vault.retention import KeepPolicy
    from strongroom.vault.settings import change_settings
    from strongroom.vault.stats import VaultStats, vault_stats
    from strongroom.vault.stored import Unstored
    from strongroom.vault.tombstones import Tombstone
    from strongroom.vault.trees import decode_tree, encode_tree
    from strongroom.vault.vault import Vault
    from strongroom.vault.writer import CHUNK_DATA, CHUNK_TREE, ChunkWriter, PutResult, WriterStats

_HOME = {
    "CHUNK_DATA": "writer",
    "CHUNK_TREE": "writer",
    "CheckReport": "check",
    "ChunkClaims": "claims",
    "ChunkWriter": "writer",
    "KDFParams": "keys",
    "KeepPolicy": "retention",
    "KeySlot": "keys",
    "Located": "reader",
    "NOT_INDEXED": "reader",
    "Place": "reader",
    "PointManifest": "points",
    "Problem": "check",
    "PruneOptions": "prune",
    "PruneReport": "prune",
    "PutResult": "writer",
    "RecoveryPoint": "points",
    "RepairReport": "repair",
    "Tombstone": "tombstones",
    "Unstored": "stored",
    "Vault": "vault",
    "VaultHandoff": "handoff",
    "VaultSettings": "config",
    "VaultStats": "stats",
    "WriterStats": "writer",
    "change_settings": "settings",
    "check_vault": "check",
    "decode_tree": "trees",
    "encode_tree": "trees",
    "open_handoff": "handoff",
    "prune": "prune",
    "repair": "repair",
    "soft_delete": "forget",
    "undelete": "forget",
    "vault_stats": "stats",
}

__all__ = [
    "CHUNK_DATA",
    "CHUNK_TREE",
    "NOT_INDEXED",
    "CheckReport",
    "ChunkClaims",
    "ChunkWriter",
    "KDFParams",
    "KeepPolicy",
    "KeySlot",
    "Located",
    "Place",
    "PointManifest",
    "Problem",
    "PruneOptions",
    "PruneReport",
    "PutResult",
    "RecoveryPoint",
    "RepairReport",
    "Tombstone",
    "Unstored",
    "Vault",
    "VaultHandoff",
    "VaultSettings",
    "VaultStats",
    "WriterStats",
    "change_settings",
    "check_vault",
    "decode_tree",
    "encode_tree",
    "open_handoff",
    "prune",
    "repair",
    "soft_delete",
    "undelete",
    "vault_stats",
]


__getattr__, __dir__ = lazy_exports(__name__, _HOME, __all__)


class _Package(types.ModuleType):
    """Keeps ``prune`` and ``repair`` the functions even after their same-named submodules
    load (the import system binds a loaded submodule as an attribute of its package)."""

    def __setattr__(self, name: str, value: object) -> None:
        if isinstance(value, types.ModuleType) and _HOME.get(name) == name:
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
